#include "engine/schema/profile.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/engine/dtr_log_reference.h"

namespace ebb {
namespace {

using Json = nlohmann::json;

const char* const kExternalLogs = EBB_SOURCE_DIR "/../shared/external/dtr_logs";
const char* const kBundledLogName = "profiles/workloads/mlp4_train.dtr.log";
const char* const kFixtureName = "profiles/workloads/mlp4_train.profile.json";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh, empty directory for one test.
std::string fresh_dir(const std::string& name) {
  std::string dir =
      testing::TempDir() + "ebb_profile_test_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

ProfiledTensor tensor(std::size_t id, std::string name, TensorKind kind,
                      std::vector<std::int64_t> shape, std::optional<std::size_t> producer,
                      std::vector<std::size_t> accesses) {
  ProfiledTensor t;
  t.id = id;
  t.name = std::move(name);
  t.kind = kind;
  t.dtype = DType::kF32;
  t.bytes = 4;
  for (std::int64_t d : shape) t.bytes *= static_cast<std::size_t>(d);
  t.shape = std::move(shape);
  t.producer = producer;
  t.accesses = std::move(accesses);
  return t;
}

// x @ w -> h; gelu(h) -> y; backward(y, h, w) -> gw. x is freed after op 0, h and y after op 2.
Profile small_profile() {
  Profile p;
  p.source = "engine";
  p.device = "cpu";
  p.iterations = 2;
  p.tensors = {
      tensor(0, "w", TensorKind::kParameter, {4, 4}, std::nullopt, {0, 2}),
      tensor(1, "x", TensorKind::kInput, {2, 4}, std::nullopt, {0}),
      tensor(2, "h", TensorKind::kActivation, {2, 4}, 0, {1, 2}),
      tensor(3, "y", TensorKind::kActivation, {2, 4}, 1, {2}),
      tensor(4, "gw", TensorKind::kGradient, {4, 4}, 2, {}),
  };
  p.ops = {
      ProfiledOp{0, "matmul", {1, 0}, {2}, 1500, {1}},
      ProfiledOp{1, "gelu", {2}, {3}, 700, {}},
      ProfiledOp{2, "matmul_backward", {3, 2, 0}, {4}, 2600, {2, 3}},
  };
  // Initial 64 + 32; +32 (h) = 128, -32 (x); +32 (y) = 128; +64 (gw) = 192.
  p.memory = {{128, 1024}, {128, 1024}, {192, 2048}};
  return p;
}

TEST(TensorKind, NamesRoundTrip) {
  for (TensorKind k : {TensorKind::kParameter, TensorKind::kGradient, TensorKind::kActivation,
                       TensorKind::kOptimizerState, TensorKind::kWorkspace, TensorKind::kInput}) {
    EXPECT_EQ(tensor_kind_from_name(tensor_kind_name(k)), k);
  }
  EXPECT_EQ(tensor_kind_name(TensorKind::kOptimizerState), "optimizer_state");
  EXPECT_FALSE(tensor_kind_from_name("weights").has_value());
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64, DType::kU8}) {
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_EQ(dtype_bytes(DType::kF32), 4u);
  EXPECT_EQ(dtype_bytes(DType::kBF16), 2u);
  EXPECT_EQ(dtype_bytes(DType::kF16), 2u);
  EXPECT_EQ(dtype_bytes(DType::kI32), 4u);
  EXPECT_EQ(dtype_bytes(DType::kI64), 8u);
  EXPECT_EQ(dtype_bytes(DType::kU8), 1u);
  EXPECT_FALSE(dtype_from_name("f64").has_value());
}

TEST(Profile, DerivedFiguresAndTensorProperties) {
  Profile p = small_profile();
  ASSERT_TRUE(validate_profile(p, "small").ok()) << validate_profile(p, "small").to_string();
  ProfileFigures f = profile_figures(p);
  EXPECT_EQ(f.peak_live_bytes, 192u);
  EXPECT_EQ(f.total_op_time_ns, 4800);
  EXPECT_EQ(f.initial_bytes, 96u);
  EXPECT_EQ(f.peak_reserved_bytes, 2048u);
  EXPECT_EQ(recompute_live_bytes(p), (std::vector<std::size_t>{128, 128, 192}));
  EXPECT_EQ(p.tensors[0].last_use(), 2u);
  EXPECT_EQ(p.tensors[4].last_use(), 2u);     // never read: its producer
  EXPECT_FALSE(p.tensors[0].recomputable());  // parameter
  EXPECT_FALSE(p.tensors[1].recomputable());  // input
  EXPECT_TRUE(p.tensors[2].recomputable());
  EXPECT_TRUE(p.tensors[4].recomputable());
  ProfiledTensor state = p.tensors[2];
  state.kind = TensorKind::kOptimizerState;
  EXPECT_FALSE(state.recomputable());
  ProfiledTensor unused = tensor(0, "u", TensorKind::kInput, {1}, std::nullopt, {});
  EXPECT_FALSE(unused.last_use().has_value());
}

TEST(ProfileJson, HandBuiltProfileRoundTrips) {
  Profile p = small_profile();
  std::string text = profile_to_json(p);
  Result<Profile> back = profile_from_json(text, "small.profile.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->version, p.version);
  EXPECT_EQ(back->source, "engine");
  EXPECT_EQ(back->device, "cpu");
  EXPECT_EQ(back->iterations, 2);
  ASSERT_EQ(back->tensors.size(), p.tensors.size());
  for (std::size_t i = 0; i < p.tensors.size(); ++i) {
    EXPECT_EQ(back->tensors[i], p.tensors[i]) << "tensors[" << i << "]";
  }
  ASSERT_EQ(back->ops.size(), p.ops.size());
  for (std::size_t k = 0; k < p.ops.size(); ++k) {
    EXPECT_EQ(back->ops[k], p.ops[k]) << "ops[" << k << "]";
  }
  EXPECT_EQ(back->memory, p.memory);
  EXPECT_EQ(*back, p);
  // Written again, it is the same text: the format is deterministic.
  EXPECT_EQ(profile_to_json(*back), text);
  // One tensor and one op per line.
  EXPECT_NE(text.find("\n  {\"id\":0,\"name\":\"w\",\"bytes\":64,"), std::string::npos) << text;
}

// One malformed profile: how to break the good JSON, and the field path the error must name.
struct Malformed {
  const char* what;
  std::function<void(Json&)> edit;
  const char* path;
};

// GoogleTest looks this name up to print a parameter.
void PrintTo(const Malformed& m, std::ostream* os) {  // NOLINT(readability-identifier-naming)
  *os << m.what;
}

class MalformedProfileTest : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedProfileTest, IsInvalidArgumentNamingFieldAndFile) {
  Json j = Json::parse(profile_to_json(small_profile()));
  GetParam().edit(j);
  Result<Profile> r = profile_from_json(j.dump(), "bad.profile.json");
  ASSERT_FALSE(r.ok()) << GetParam().what;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("bad.profile.json: "), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(std::string(GetParam().path) + ": "), std::string::npos)
      << GetParam().what << ": " << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedProfileTest,
    testing::Values(
        Malformed{"no source", [](Json& j) { j.erase("source"); }, "source"},
        Malformed{"device not a string", [](Json& j) { j["device"] = 3; }, "device"},
        Malformed{"zero iterations", [](Json& j) { j["iterations"] = 0; }, "iterations"},
        Malformed{"no memory", [](Json& j) { j.erase("memory"); }, "memory"},
        Malformed{"tensors not an array", [](Json& j) { j["tensors"] = 1; }, "tensors"},
        Malformed{"tensor not an object", [](Json& j) { j["tensors"][1] = 1; }, "tensors[1]"},
        Malformed{"tensor id out of order", [](Json& j) { j["tensors"][1]["id"] = 3; },
                  "tensors[1].id"},
        Malformed{"no tensor name", [](Json& j) { j["tensors"][2].erase("name"); },
                  "tensors[2].name"},
        Malformed{"negative bytes", [](Json& j) { j["tensors"][2]["bytes"] = -32; },
                  "tensors[2].bytes"},
        Malformed{"bytes not the shape's", [](Json& j) { j["tensors"][2]["bytes"] = 33; },
                  "tensors[2].bytes"},
        Malformed{"negative dimension", [](Json& j) { j["tensors"][0]["shape"][1] = -4; },
                  "tensors[0].shape[1]"},
        // 2^32 * 2^32 wraps to 0 elements, which a bytes of 0 would have matched.
        Malformed{"shape past 2^64 bytes",
                  [](Json& j) {
                    j["tensors"][0]["shape"] = Json::array({4294967296LL, 4294967296LL});
                    j["tensors"][0]["bytes"] = 0;
                  },
                  "tensors[0].shape[1]"},
        Malformed{"unknown kind", [](Json& j) { j["tensors"][2]["kind"] = "weights"; },
                  "tensors[2].kind"},
        Malformed{"unknown dtype", [](Json& j) { j["tensors"][2]["dtype"] = "f64"; },
                  "tensors[2].dtype"},
        Malformed{"producer past the end", [](Json& j) { j["tensors"][2]["producer"] = 7; },
                  "tensors[2].producer"},
        Malformed{"producer that does not list it",
                  [](Json& j) { j["tensors"][3]["producer"] = 0; }, "tensors[3].producer"},
        Malformed{"no producer field", [](Json& j) { j["tensors"][3].erase("producer"); },
                  "tensors[3].producer"},
        Malformed{"access not a number", [](Json& j) { j["tensors"][0]["accesses"][1] = "2"; },
                  "tensors[0].accesses[1]"},
        Malformed{"accesses unsorted",
                  [](Json& j) {
                    j["tensors"][0]["accesses"] = Json::array({2, 0});
                  },
                  "tensors[0].accesses[1]"},
        Malformed{"access past the end", [](Json& j) { j["tensors"][3]["accesses"][0] = 9; },
                  "tensors[3].accesses[0]"},
        Malformed{"accesses not the readers",
                  [](Json& j) { j["tensors"][2]["accesses"] = Json::array({1}); },
                  "tensors[2].accesses"},
        Malformed{"op index not a number", [](Json& j) { j["ops"][0]["index"] = "a"; },
                  "ops[0].index"},
        Malformed{"output not a number", [](Json& j) { j["ops"][1]["outputs"][0] = "y"; },
                  "ops[1].outputs[0]"},
        Malformed{"output past the end", [](Json& j) { j["ops"][1]["outputs"][0] = 99; },
                  "ops[1].outputs[0]"},
        Malformed{"input past the end", [](Json& j) { j["ops"][2]["inputs"][2] = 5; },
                  "ops[2].inputs[2]"},
        Malformed{"input before its producer", [](Json& j) { j["ops"][0]["inputs"][0] = 3; },
                  "ops[0].inputs[0]"},
        Malformed{"input after its free", [](Json& j) { j["ops"][0]["frees"][0] = 2; },
                  "ops[1].inputs[0]"},
        Malformed{"freed twice",
                  [](Json& j) {
                    j["ops"][2]["frees"] = Json::array({2, 2});
                  },
                  "ops[2].frees[1]"},
        Malformed{"free past the end", [](Json& j) { j["ops"][2]["frees"][0] = 12; },
                  "ops[2].frees[0]"},
        Malformed{"negative duration", [](Json& j) { j["ops"][2]["duration_ns"] = -5; },
                  "ops[2].duration_ns"},
        Malformed{"no inputs", [](Json& j) { j["ops"][1].erase("inputs"); }, "ops[1].inputs"},
        Malformed{"a memory point short", [](Json& j) { j["memory"].erase(2); }, "memory"},
        Malformed{"wrong live bytes", [](Json& j) { j["memory"][1]["live_bytes"] = 5; },
                  "memory[1].live_bytes"},
        Malformed{"reserved bytes not a number",
                  [](Json& j) { j["memory"][0]["reserved_bytes"] = nullptr; },
                  "memory[0].reserved_bytes"},
        Malformed{"not an object", [](Json& j) { j = Json::array(); }, "(document)"}));

TEST(ProfileJson, BrokenJsonNamesTheFile) {
  Result<Profile> r = profile_from_json("{\"version\": 1,", "cut.profile.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("cut.profile.json"), std::string::npos);
}

TEST(ProfileJson, UnknownVersionNamesFoundAndSupported) {
  Json j = Json::parse(profile_to_json(small_profile()));
  j["version"] = 7;
  Result<Profile> r = profile_from_json(j.dump(), "future.profile.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("future.profile.json: version: "), std::string::npos);
  EXPECT_NE(r.status().message().find("version 7 is not supported"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("reads version 1"), std::string::npos);

  j["version"] = "1";
  r = profile_from_json(j.dump(), "future.profile.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("version: expected an integer"), std::string::npos);

  Profile p = small_profile();
  p.version = 2;
  Status s = validate_profile(p, "hand-built");
  EXPECT_NE(s.message().find("version 2 is not supported"), std::string::npos) << s.message();
}

TEST(ProfileFile, WriteIsAtomicAndReadsBack) {
  std::string dir = fresh_dir("write");
  std::string path = dir + "/p.profile.json";
  std::ofstream(path) << "old contents";
  Profile p = small_profile();
  ASSERT_TRUE(write_profile(p, path).ok());
  // Only the target: the temporary file was renamed over it.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"p.profile.json"});
  EXPECT_EQ(read_text(path), profile_to_json(p));
  Result<Profile> back = read_profile(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, p);
  std::filesystem::remove_all(dir);
}

TEST(ProfileFile, UnwritableDirectoryNamesThePath) {
  std::string path = fresh_dir("unwritable") + "/no/such/dir/p.profile.json";
  Status s = write_profile(small_profile(), path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
}

TEST(ProfileFile, InvalidProfileIsNotWritten) {
  std::string dir = fresh_dir("invalid");
  Profile p = small_profile();
  p.ops[1].outputs[0] = 42;
  Status s = write_profile(p, dir + "/p.profile.json");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ops[1].outputs[0]"), std::string::npos) << s.message();
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST(ProfileFile, ReadErrorsNameTheFile) {
  std::string dir = fresh_dir("read");
  Result<Profile> missing = read_profile(dir + "/absent.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir + "/absent.json"), std::string::npos);

  Json j = Json::parse(profile_to_json(small_profile()));
  j["ops"][1]["outputs"][0] = "y";
  std::string path = dir + "/bad.json";
  std::ofstream(path) << j.dump();
  Result<Profile> bad = read_profile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path + ": ops[1].outputs[0]: "), std::string::npos)
      << bad.status().message();
  std::filesystem::remove_all(dir);
}

TEST(ProfileDtr, ImportFollowsStorageSemantics) {
  // The log of tests/allocator/dtr_log_test.cc's StorageSemantics.
  std::string text = R"({"ANNOTATION":"START","INSTRUCTION":"ANNOTATE"}
{"INSTRUCTION":"CONSTANT","NAME":"w"}
{"INSTRUCTION":"MEMORY","MEMORY":"1000","NAME":"w"}
{"ARGS":["w"],"INSTRUCTION":"CALL","NAME":"op","RESULT":["a","v"],"TIME":"10"}
{"INSTRUCTION":"MEMORY","MEMORY":"200","NAME":"a"}
{"ALIAS":"-1","INSTRUCTION":"ALIAS","NAME":"a"}
{"INSTRUCTION":"MEMORY","MEMORY":"1000","NAME":"v"}
{"ALIAS":"0","INSTRUCTION":"ALIAS","NAME":"v"}
{"DST":"a2","INSTRUCTION":"COPY","SRC":"a"}
{"ARGS":["a","w"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"add_","TIME":"5"}
{"INSTRUCTION":"RELEASE","NAME":"a2"}
{"ARGS":["a"],"INSTRUCTION":"MUTATE","MUTATE":[0],"NAME":"relu_","TIME":"7"}
{"ANNOTATION":"BACKWARD","INSTRUCTION":"ANNOTATE"}
{"INSTRUCTION":"RELEASE","NAME":"w"}
{"ARGS":["v"],"INSTRUCTION":"CALL","NAME":"zeros","RESULT":["z"],"TIME":"1"}
{"INSTRUCTION":"MEMORY","MEMORY":"0","NAME":"z"}
{"ALIAS":"-1","INSTRUCTION":"ALIAS","NAME":"z"}
{"DST":"v","INSTRUCTION":"COPY_FROM","SRC":"a"}
)";
  Result<DtrLog> log = parse_dtr_log(text, "small.log");
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<Profile> p = profile_from_dtr_log(*log);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->source, "dtr:small.log");
  ASSERT_EQ(p->ops.size(), 4u);
  ASSERT_EQ(p->tensors.size(), 5u);  // w, a, add_'s and relu_'s fresh storages, z
  EXPECT_EQ(p->tensors[0].name, "w");
  EXPECT_EQ(p->tensors[0].kind, TensorKind::kParameter);
  EXPECT_FALSE(p->tensors[0].producer.has_value());
  EXPECT_EQ(p->tensors[2].name, "a@1");
  EXPECT_EQ(p->tensors[2].bytes, 200u);
  EXPECT_EQ(p->tensors[2].kind, TensorKind::kActivation);
  EXPECT_EQ(p->tensors[2].dtype, DType::kU8);
  EXPECT_TRUE(p->tensors[2].shape.empty());
  // op: reads w, makes a (v is a view of w: no tensor).
  EXPECT_EQ(p->ops[0], (ProfiledOp{0, "op", {0}, {1}, 10, {}}));
  // add_ reads a and w, makes a fresh storage; a's old one lives on in a2 until its RELEASE.
  EXPECT_EQ(p->ops[1], (ProfiledOp{1, "add_", {1, 0}, {2}, 5, {1}}));
  // relu_ replaces a's storage again; the old one had no other handle.
  EXPECT_EQ(p->ops[2], (ProfiledOp{2, "relu_", {2}, {3}, 7, {2}}));
  // zeros reads the view v, i.e. w's storage, which COPY_FROM then frees.
  EXPECT_EQ(p->ops[3], (ProfiledOp{3, "zeros", {0}, {4}, 1, {0}}));
  EXPECT_EQ(p->tensors[0].accesses, (std::vector<std::size_t>{0, 1, 3}));
  EXPECT_EQ(p->memory, (std::vector<MemoryPoint>{{1200, 0}, {1400, 0}, {1400, 0}, {1200, 0}}));
  ProfileFigures f = profile_figures(*p);
  EXPECT_EQ(f.peak_live_bytes, 1400u);
  EXPECT_EQ(f.total_op_time_ns, 23);
  EXPECT_EQ(f.initial_bytes, 1000u);
}

struct CheckFigures {
  std::string file;  // absolute, or relative to the source tree
  std::size_t ops;
  std::size_t peak_live_bytes;
  std::int64_t total_op_time_ns;
  std::size_t constant_bytes;
};

class DtrImportTest : public testing::TestWithParam<CheckFigures> {};

TEST_P(DtrImportTest, ReproducesTheCheckFiguresAndRoundTrips) {
  const std::string& path = GetParam().file;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is not present";
  Result<DtrLog> log = read_dtr_log(path);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<Profile> p = profile_from_dtr_log(*log);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->ops.size(), GetParam().ops);
  ProfileFigures f = profile_figures(*p);
  EXPECT_EQ(f.peak_live_bytes, GetParam().peak_live_bytes);
  EXPECT_EQ(f.total_op_time_ns, GetParam().total_op_time_ns);
  EXPECT_EQ(f.initial_bytes, GetParam().constant_bytes);
  Result<DtrFigures> dtr = dtr_figures(*log);
  ASSERT_TRUE(dtr.ok());
  EXPECT_EQ(p->tensors.size(), dtr->storages);

  Result<Profile> back = profile_from_json(profile_to_json(*p), "import");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_TRUE(*back == *p);
}

INSTANTIATE_TEST_SUITE_P(
    Logs, DtrImportTest,
    testing::Values(CheckFigures{std::string(EBB_SOURCE_DIR "/") + kBundledLogName, 91, 720'043'656,
                                 3'705'292, 504'397'544},
                    CheckFigures{std::string(kExternalLogs) + "/unet.log", 247, 8'415'764'640,
                                 435'278'292, 93'386'276},
                    CheckFigures{std::string(kExternalLogs) + "/resnet32.log", 286, 10'061'179'152,
                                 291'905'487, 35'584'920},
                    CheckFigures{std::string(kExternalLogs) + "/lstm.log", 7926, 5'595'127'736,
                                 769'458'833, 194'424'928}),
    [](const testing::TestParamInfo<CheckFigures>& info) {
      std::string name = std::filesystem::path(info.param.file).stem().stem().string();
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

// The bundled fixture is this code's import of the bundled log. Set EBB_UPDATE_FIXTURES=1 to
// rewrite it after a deliberate change of the import or the format.
TEST(ProfileFixture, MatchesTheImportOfTheBundledLog) {
  std::string log_path = std::string(EBB_SOURCE_DIR "/") + kBundledLogName;
  std::string fixture_path = std::string(EBB_SOURCE_DIR "/") + kFixtureName;
  // Parsed under its repository-relative name, so that the fixture's source does not depend on
  // where the checkout is.
  Result<DtrLog> log = parse_dtr_log(read_text(log_path), kBundledLogName);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<Profile> p = profile_from_dtr_log(*log);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  const char* update = std::getenv("EBB_UPDATE_FIXTURES");
  if (update != nullptr && std::string(update) == "1") {
    ASSERT_TRUE(write_profile(*p, fixture_path).ok());
  }
  std::string want = profile_to_json(*p);
  std::string have = read_text(fixture_path);
  if (have != want) {
    // Name the first line that differs rather than print two 26 kB strings.
    std::istringstream h(have), w(want);
    std::string hl, wl;
    int line = 0;
    while (std::getline(h, hl) && std::getline(w, wl) && hl == wl) ++line;
    ADD_FAILURE() << fixture_path << " is stale (first difference at line " << line + 1
                  << "): rerun engine_test with EBB_UPDATE_FIXTURES=1\n  file:   " << hl
                  << "\n  import: " << wl;
  }
  Result<Profile> fixture = read_profile(fixture_path);
  ASSERT_TRUE(fixture.ok()) << fixture.status().to_string();
  EXPECT_TRUE(*fixture == *p);
  EXPECT_EQ(fixture->source, std::string("dtr:") + kBundledLogName);
}

// The fixture's key figures, read straight from its JSON (not through profile_from_json), against
// a reading of the log that shares no code with the importer (tests/engine/dtr_log_reference.h):
// a fixture regenerated by a broken importer fails here even though it matches the import.
TEST(ProfileFixture, KeyFiguresMatchAnIndependentReadingOfTheLog) {
  const testing_dtr::ReferenceReading want =
      testing_dtr::read_reference(read_text(std::string(EBB_SOURCE_DIR "/") + kBundledLogName));
  const Json have = Json::parse(read_text(std::string(EBB_SOURCE_DIR "/") + kFixtureName));
  // The log's own figures, as the DTR authors' simulator reports them (DtrImportTest's row).
  ASSERT_EQ(want.ops.size(), 91u);
  EXPECT_EQ(want.peak_live_bytes, 720'043'656u);
  EXPECT_EQ(want.total_time_ns, 3'705'292);
  EXPECT_EQ(want.constant_bytes, 504'397'544u);

  EXPECT_EQ(have["source"], std::string("dtr:") + kBundledLogName);
  EXPECT_EQ(have["iterations"], 1);
  ASSERT_EQ(have["ops"].size(), want.ops.size());
  ASSERT_EQ(have["tensors"].size(), want.storages.size());
  ASSERT_EQ(have["memory"].size(), want.ops.size());

  std::size_t total_bytes = 0;
  std::vector<std::vector<std::size_t>> readers(want.storages.size());
  for (std::size_t k = 0; k < want.ops.size(); ++k) {
    const Json& op = have["ops"][k];
    const testing_dtr::ReferenceOp& ref = want.ops[k];
    SCOPED_TRACE("op " + std::to_string(k) + " (" + ref.name + ")");
    EXPECT_EQ(op["index"], k);
    EXPECT_EQ(op["name"], ref.name);
    EXPECT_EQ(op["duration_ns"], ref.duration_ns);
    EXPECT_EQ(op["inputs"].get<std::vector<std::size_t>>(), ref.inputs);
    EXPECT_EQ(op["outputs"].get<std::vector<std::size_t>>(), ref.outputs);
    std::vector<std::size_t> frees = op["frees"].get<std::vector<std::size_t>>();
    std::vector<std::size_t> want_frees = ref.frees;
    std::sort(frees.begin(), frees.end());
    std::sort(want_frees.begin(), want_frees.end());
    EXPECT_EQ(frees, want_frees);
    for (std::size_t s : ref.inputs) {
      if (readers[s].empty() || readers[s].back() != k) readers[s].push_back(k);
    }
  }
  for (std::size_t s = 0; s < want.storages.size(); ++s) {
    const Json& t = have["tensors"][s];
    const testing_dtr::ReferenceStorage& ref = want.storages[s];
    SCOPED_TRACE("tensor " + std::to_string(s) + " (" + ref.handle + ")");
    EXPECT_EQ(t["id"], s);
    // A mutated handle's fresh storage is named "<handle>@<op>".
    EXPECT_EQ(t["name"].get<std::string>().substr(0, ref.handle.size()), ref.handle);
    EXPECT_EQ(t["bytes"], ref.bytes);
    EXPECT_EQ(t["kind"], ref.constant ? "parameter" : "activation");
    EXPECT_EQ(t["dtype"], "u8");
    if (ref.producer.has_value()) {
      EXPECT_EQ(t["producer"], *ref.producer);
    } else {
      EXPECT_TRUE(t["producer"].is_null());
    }
    EXPECT_EQ(t["accesses"].get<std::vector<std::size_t>>(), readers[s]);
    total_bytes += t["bytes"].get<std::size_t>();
  }
  std::size_t want_total = 0;
  for (const testing_dtr::ReferenceStorage& s : want.storages) want_total += s.bytes;
  EXPECT_EQ(total_bytes, want_total);

  const std::vector<std::size_t> live = want.live_after_outputs();
  std::size_t peak = 0;
  for (std::size_t k = 0; k < live.size(); ++k) {
    EXPECT_EQ(have["memory"][k]["live_bytes"], live[k]) << "memory[" << k << "]";
    peak = std::max(peak, have["memory"][k]["live_bytes"].get<std::size_t>());
  }
  EXPECT_EQ(peak, want.peak_live_bytes);
}

TEST(ProfileAgreement, EqualProfilesAgreeWhateverTheirDurations) {
  Profile a = small_profile();
  Profile b = small_profile();
  EXPECT_TRUE(check_profiles_agree(a, b).ok());
  b.ops[1].duration_ns = 9999;
  b.memory[1].reserved_bytes = 4096;
  EXPECT_TRUE(check_profiles_agree(a, b).ok());
}

TEST(ProfileAgreement, RenamedOpNamesIndexAndBothNames) {
  Profile b = small_profile();
  b.ops[1].name = "relu";
  Status s = check_profiles_agree(small_profile(), b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("op 1: gelu vs relu"), std::string::npos) << s.message();
}

TEST(ProfileAgreement, SizeChangeNamesOpAndBothSizes) {
  Profile b = small_profile();
  b.tensors[3].shape = {3, 4};
  b.tensors[3].bytes = 48;
  Status s = check_profiles_agree(small_profile(), b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("op 1 (gelu): outputs[0]"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("32 B"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("48 B"), std::string::npos) << s.message();

  // The same op reading one more input.
  Profile c = small_profile();
  c.ops[1].inputs.push_back(0);
  s = check_profiles_agree(small_profile(), c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("op 1 (gelu): 1 inputs vs 2"), std::string::npos) << s.message();
}

TEST(ProfileAgreement, MissingOpNamesWhereAndTheCounts) {
  Profile b = small_profile();
  b.ops.pop_back();
  Status s = check_profiles_agree(small_profile(), b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("op 2: 3 ops vs 2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("matmul_backward"), std::string::npos) << s.message();

  Profile c = small_profile();
  c.ops.erase(c.ops.begin() + 1);  // gelu skipped: matmul_backward comes one op early
  s = check_profiles_agree(small_profile(), c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("op 1: gelu vs matmul_backward"), std::string::npos) << s.message();
}

// The bundled log rewritten as a second recording of the same work would be: every handle
// renamed, every TIME different. `edit_op(k, line)` may change the line of op k (a CALL or
// MUTATE) on top of that.
Profile rerecorded(const std::function<void(std::size_t, Json&)>& edit_op) {
  std::istringstream in(read_text(std::string(EBB_SOURCE_DIR "/") + kBundledLogName));
  std::string text;
  std::size_t op = 0;
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    const std::string kind = j["INSTRUCTION"];
    auto rename = [&](const char* field) {
      if (!j.contains(field)) return;
      if (j[field].is_string()) {
        j[field] = "again_" + j[field].get<std::string>();
      } else {
        for (Json& h : j[field]) h = "again_" + h.get<std::string>();
      }
    };
    for (const char* field : {"ARGS", "RESULT", "DST", "SRC"}) rename(field);
    if (kind == "CALL" || kind == "MUTATE") {
      j["TIME"] = std::to_string(3 * std::stoll(j["TIME"].get<std::string>()) + 17);
      edit_op(op++, j);
    } else {
      rename("NAME");  // a handle everywhere but on an op
    }
    text += j.dump() + "\n";
  }
  return profile_from_dtr_log(parse_dtr_log(text, "again.log").value()).value();
}

TEST(ProfileAgreement, TwoRecordingsOfTheSameWorkAgree) {
  Result<DtrLog> log = read_dtr_log(std::string(EBB_SOURCE_DIR "/") + kBundledLogName);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  Result<Profile> first = profile_from_dtr_log(*log);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  const Profile again = rerecorded([](std::size_t, Json&) {});
  // Not a copy: other names, other durations, the same work.
  ASSERT_EQ(again.tensors.size(), first->tensors.size());
  EXPECT_NE(again.tensors[0].name, first->tensors[0].name);
  EXPECT_NE(again.ops[0].duration_ns, first->ops[0].duration_ns);
  EXPECT_FALSE(again == *first);
  Status s = check_profiles_agree(*first, again);
  EXPECT_TRUE(s.ok()) << s.to_string();
  Result<Profile> fixture = read_profile(std::string(EBB_SOURCE_DIR "/") + kFixtureName);
  ASSERT_TRUE(fixture.ok()) << fixture.status().to_string();
  s = check_profiles_agree(*fixture, again);
  EXPECT_TRUE(s.ok()) << s.to_string();

  ASSERT_EQ(first->ops[40].name, "add_");
  const Profile renamed = rerecorded([](std::size_t k, Json& line) {
    if (k == 40) line["NAME"] = "sub_";
  });
  s = check_profiles_agree(*first, renamed);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("op 40: add_ vs sub_"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ebb
