// The JSON form of HardwareModel (profiles/README.md, "The hardware profile format").
#include "engine/schema/hardware_model.h"

#include <string>

#include "engine/schema/atomic_file.h"
#include "engine/schema/hardware_model_json.h"

namespace ebb {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

Result<HardwareModel> hardware_model_from(const Json& j, const JsonFieldReader& r,
                                          const std::string& p) {
  if (!j.is_object()) return r.fail(p.empty() ? "(document)" : p, "expected a JSON object");
  HardwareModel m;
  EBB_ASSIGN_OR_RETURN(m.name, r.string_field(j, p, "name"));
  EBB_ASSIGN_OR_RETURN(m.host_to_device_bytes_per_s,
                       r.bandwidth_field(j, p, "host_to_device_bytes_per_s"));
  EBB_ASSIGN_OR_RETURN(m.device_to_host_bytes_per_s,
                       r.bandwidth_field(j, p, "device_to_host_bytes_per_s"));
  if ((m.host_to_device_bytes_per_s > 0) != (m.device_to_host_bytes_per_s > 0)) {
    const char* zero = m.host_to_device_bytes_per_s > 0 ? "device_to_host_bytes_per_s"
                                                        : "host_to_device_bytes_per_s";
    return r.fail(p + zero,
                  "is 0 while the other direction is not: a host link needs both "
                  "directions (set both to 0 for a device without one)");
  }
  EBB_ASSIGN_OR_RETURN(std::int64_t latency_ns, r.signed_field(j, p, "link_latency_ns"));
  if (latency_ns < 0) return r.fail(p + "link_latency_ns", "must be >= 0");
  m.link_latency = std::chrono::nanoseconds(latency_ns);
  EBB_ASSIGN_OR_RETURN(m.duplex, r.bool_field(j, p, "duplex"));
  // The NVMe tier is optional: a machine without one leaves both fields out.
  if (j.contains("nvme_read_bytes_per_s") || j.contains("nvme_write_bytes_per_s")) {
    EBB_ASSIGN_OR_RETURN(m.nvme_read_bytes_per_s, r.bandwidth_field(j, p, "nvme_read_bytes_per_s"));
    EBB_ASSIGN_OR_RETURN(m.nvme_write_bytes_per_s,
                         r.bandwidth_field(j, p, "nvme_write_bytes_per_s"));
  }
  // The mapping granularity is optional too: absent, the sim maps 2 MiB pages as CUDA does.
  if (j.contains("page_bytes")) {
    EBB_ASSIGN_OR_RETURN(std::int64_t page_bytes, r.signed_field(j, p, "page_bytes"));
    if (page_bytes < 0 || (page_bytes & (page_bytes - 1)) != 0) {
      return r.fail(p + "page_bytes", "must be 0 or a power of two");
    }
    m.page_bytes = static_cast<std::size_t>(page_bytes);
  }
  return m;
}

OrderedJson hardware_model_json(const HardwareModel& m) {
  return OrderedJson{{"name", m.name},
                     {"host_to_device_bytes_per_s", m.host_to_device_bytes_per_s},
                     {"device_to_host_bytes_per_s", m.device_to_host_bytes_per_s},
                     {"link_latency_ns", m.link_latency.count()},
                     {"duplex", m.duplex},
                     {"nvme_read_bytes_per_s", m.nvme_read_bytes_per_s},
                     {"nvme_write_bytes_per_s", m.nvme_write_bytes_per_s},
                     {"page_bytes", m.page_bytes}};
}

Result<HardwareModel> hardware_model_from_json(std::string_view text,
                                               const std::string& source_name) {
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  JsonFieldReader r(source_name);
  if (root.is_discarded()) return r.fail("(document)", "not valid JSON");
  return hardware_model_from(root, r, "");
}

std::string hardware_model_to_json(const HardwareModel& model) {
  return hardware_model_json(model).dump(2) + "\n";
}

Result<HardwareModel> read_hardware_model(const std::string& path) {
  EBB_ASSIGN_OR_RETURN(std::string text, read_text_file(path, "hardware profile"));
  return hardware_model_from_json(text, path);
}

}  // namespace ebb
