// A second, deliberately plain reading of a DTR log for the profile fixture's test: written from
// the format's definition in allocator/dtr_log.h and profile_from_dtr_log's contract in
// engine/schema/profile.h, sharing no code with the parser or the importer, so that a fixture
// the importer regenerates (EBB_UPDATE_FIXTURES=1) is still checked against something it did
// not write.
//
// The rules it follows: a handle is bound to a storage; CONSTANT and a CALL result with ALIAS -1
// make a fresh storage, a result with ALIAS k binds to the storage of ARGS[k]; COPY binds DST to
// SRC's storage; COPY_FROM rebinds DST to SRC's storage and drops DST's old one; a MUTATE makes
// a fresh storage of the old one's size per mutated handle, rebinds the handle to it and then
// drops the old binding; a storage dies with its last handle. One op per CALL and MUTATE, reading
// the storage of each argument (once per argument), making the fresh storages; a storage that
// dies is freed after the last op so far (op 0 before the first op).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace ebb::testing_dtr {

struct ReferenceOp {
  std::string name;
  std::int64_t duration_ns = 0;
  std::vector<std::size_t> inputs;   // one storage per argument
  std::vector<std::size_t> outputs;  // fresh storages
  std::vector<std::size_t> frees;    // storages that died after this op
};

struct ReferenceStorage {
  std::string handle;  // the handle it was made for
  std::size_t bytes = 0;
  bool constant = false;
  std::optional<std::size_t> producer;
};

struct ReferenceReading {
  std::vector<ReferenceStorage> storages;
  std::vector<ReferenceOp> ops;
  // The most bytes live at once, instruction by instruction (the DTR simulator's figure).
  std::size_t peak_live_bytes = 0;
  std::size_t constant_bytes = 0;
  std::int64_t total_time_ns = 0;

  // Per op: the constants, plus what every op up to it made, less what the ops before it freed.
  std::vector<std::size_t> live_after_outputs() const {
    std::size_t live = constant_bytes;
    std::vector<std::size_t> curve;
    for (const ReferenceOp& op : ops) {
      for (std::size_t s : op.outputs) live += storages[s].bytes;
      curve.push_back(live);
      for (std::size_t s : op.frees) live -= storages[s].bytes;
    }
    return curve;
  }
};

// REQUIRES: a well-formed log (every CALL followed by a MEMORY and an ALIAS line per result,
// every CONSTANT by its MEMORY line, every handle live where it is used).
inline ReferenceReading read_reference(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  ReferenceReading r;
  std::map<std::string, std::size_t> storage_of;  // live handle -> storage
  std::vector<int> handles;                       // per storage: handles bound to it
  std::vector<std::size_t> freed_before_any_op;
  std::size_t live = 0;
  auto make = [&](const std::string& handle, std::size_t bytes, bool constant) {
    r.storages.push_back({handle, bytes, constant, std::nullopt});
    if (!constant) r.storages.back().producer = r.ops.size() - 1;
    handles.push_back(0);
    live += bytes;
    r.peak_live_bytes = std::max(r.peak_live_bytes, live);
    return r.storages.size() - 1;
  };
  auto bind = [&](const std::string& handle, std::size_t storage) {
    storage_of[handle] = storage;
    ++handles[storage];
  };
  auto unbind = [&](std::size_t storage) {
    if (--handles[storage] > 0) return;
    live -= r.storages[storage].bytes;
    if (r.ops.empty()) {
      freed_before_any_op.push_back(storage);
    } else {
      r.ops.back().frees.push_back(storage);
    }
  };
  auto bytes_of = [](const nlohmann::json& memory_line) {
    return static_cast<std::size_t>(std::stoull(memory_line["MEMORY"].get<std::string>()));
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json& l = lines[i];
    const std::string kind = l["INSTRUCTION"];
    if (kind == "CONSTANT") {
      const std::size_t bytes = bytes_of(lines[++i]);
      r.constant_bytes += bytes;
      bind(l["NAME"], make(l["NAME"], bytes, /*constant=*/true));
    } else if (kind == "CALL" || kind == "MUTATE") {
      ReferenceOp op;
      op.name = l["NAME"];
      op.duration_ns = std::stoll(l["TIME"].get<std::string>());
      r.total_time_ns += op.duration_ns;
      const std::vector<std::string> args = l["ARGS"];
      for (const std::string& a : args) op.inputs.push_back(storage_of.at(a));
      r.ops.push_back(std::move(op));
      if (kind == "CALL") {
        for (const std::string result : l["RESULT"]) {
          const std::size_t bytes = bytes_of(lines[++i]);
          const int alias = std::stoi(lines[++i]["ALIAS"].get<std::string>());
          if (alias >= 0) {
            bind(result, storage_of.at(args[static_cast<std::size_t>(alias)]));
          } else {
            const std::size_t s = make(result, bytes, /*constant=*/false);
            r.ops.back().outputs.push_back(s);
            bind(result, s);
          }
        }
      } else {
        for (int index : l["MUTATE"]) {
          const std::string& handle = args[static_cast<std::size_t>(index)];
          const std::size_t old = storage_of.at(handle);
          const std::size_t s = make(handle, r.storages[old].bytes, /*constant=*/false);
          r.ops.back().outputs.push_back(s);
          bind(handle, s);
          unbind(old);
        }
      }
    } else if (kind == "COPY") {
      bind(l["DST"], storage_of.at(l["SRC"]));
    } else if (kind == "COPY_FROM") {
      const std::size_t old = storage_of.at(l["DST"]);
      bind(l["DST"], storage_of.at(l["SRC"]));
      unbind(old);
    } else if (kind == "RELEASE") {
      const std::size_t s = storage_of.at(l["NAME"]);
      storage_of.erase(l["NAME"].get<std::string>());
      unbind(s);
    }
  }
  if (!r.ops.empty()) {
    std::vector<std::size_t>& frees = r.ops.front().frees;
    frees.insert(frees.begin(), freed_before_any_op.begin(), freed_before_any_op.end());
  }
  return r;
}

}  // namespace ebb::testing_dtr
