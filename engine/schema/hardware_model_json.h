// The JSON object of a HardwareModel, shared by the hardware profile's own file and the plan,
// which embeds the model it was made for. Internal to engine/schema.
//
// Thread safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "engine/schema/hardware_model.h"
#include "engine/schema/json_fields.h"

namespace ebb {

// Reads the object `j` found at path `p` (with a trailing ".", or empty at the root).
Result<HardwareModel> hardware_model_from(const nlohmann::json& j, const JsonFieldReader& r,
                                          const std::string& p);
nlohmann::ordered_json hardware_model_json(const HardwareModel& m);

}  // namespace ebb
