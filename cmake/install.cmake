# What `cmake --install build --prefix P` puts in P, and the CMake package a consumer finds with
# find_package(ebb CONFIG REQUIRED) (examples/consumer/):
#   P/include/ebb/{kernels,allocator,offload,engine}/...  the headers of the installed libraries;
#       both P/include and P/include/ebb are on the targets' include path, so a consumer writes
#       <ebb/engine/ebb.h> while the headers' own includes ("kernels/device.h") resolve as they
#       do in the source tree
#   P/lib/libebb_{kernels,allocator,offload,engine,planner}.a, libebb_kernels_cuda.a (CUDA
#       builds), libebb_comm_mpi.so (the mpi communicator's plugin, where MPI was found: ebb
#       finds it beside the binary's ../lib, a consumer sets EBB_COMM_MPI_PLUGIN)
#   P/lib/cmake/ebb/  ebbConfig.cmake, ebbConfigVersion.cmake, ebbTargets*.cmake: ebb::engine,
#       ebb::planner and the layers below them; ebb::cuda and ebb::comm_mpi where built
#   P/bin/ebb
# The trainer and report libraries behind the binary (tools/) are not installed: they are the
# CLI's, not an API.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# First, before any file is copied: a prefix that cannot be written is refused naming the
# prefix and the reason. CMake's own error names the first subdirectory it failed to create
# and suggests administrative privileges, which misleads when a path component is a file.
install(CODE [[
  set(ebb_prefix "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
  set(ebb_existing "${ebb_prefix}")
  while(NOT EXISTS "${ebb_existing}")
    get_filename_component(ebb_existing "${ebb_existing}" DIRECTORY)
  endwhile()
  set(ebb_hint "choose a prefix you can write: cmake --install <build> --prefix <dir>")
  if(NOT IS_DIRECTORY "${ebb_existing}")
    message(FATAL_ERROR "ebb: cannot install into ${ebb_prefix}: ${ebb_existing} is a file, "
                        "not a directory; ${ebb_hint}")
  endif()
  execute_process(COMMAND "${CMAKE_COMMAND}" -E make_directory "${ebb_prefix}"
                  RESULT_VARIABLE ebb_failed ERROR_QUIET OUTPUT_QUIET)
  if(NOT ebb_failed)
    execute_process(COMMAND "${CMAKE_COMMAND}" -E touch "${ebb_prefix}/.ebb-install-probe"
                    RESULT_VARIABLE ebb_failed ERROR_QUIET OUTPUT_QUIET)
    file(REMOVE "${ebb_prefix}/.ebb-install-probe")
  endif()
  if(ebb_failed)
    message(FATAL_ERROR "ebb: cannot install into ${ebb_prefix}: it cannot be created or "
                        "written (in ${ebb_existing}, a read-only file system or a directory "
                        "this user may not write); ${ebb_hint}")
  endif()
]])

set(ebb_installed_libraries ebb_kernels ebb_allocator ebb_offload ebb_engine ebb_planner)
set(ebb_backends cpu sim)
set(ebb_components "")
if(TARGET ebb_kernels_cuda)
  list(APPEND ebb_installed_libraries ebb_kernels_cuda)
  list(APPEND ebb_backends cuda)
  list(APPEND ebb_components cuda)
endif()
# kernels/ decides nccl (kernels/cuda/CMakeLists.txt) and says so in ebb_kernels' definitions.
get_target_property(ebb_kernels_definitions ebb_kernels INTERFACE_COMPILE_DEFINITIONS)
if("EBB_HAVE_NCCL=1" IN_LIST ebb_kernels_definitions)
  list(APPEND ebb_backends nccl)
  list(APPEND ebb_components nccl)
endif()
if(TARGET ebb_comm_mpi)
  list(APPEND ebb_installed_libraries ebb_comm_mpi)
  list(APPEND ebb_backends mpi)
  list(APPEND ebb_components mpi)
endif()
list(APPEND ebb_backends io_uring)
foreach(target IN LISTS ebb_installed_libraries)
  string(REGEX REPLACE "^ebb_" "" export_name ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
endforeach()
if(TARGET ebb_kernels_cuda)
  set_target_properties(ebb_kernels_cuda PROPERTIES EXPORT_NAME cuda)
endif()

install(TARGETS ${ebb_installed_libraries} EXPORT ebbTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} ${CMAKE_INSTALL_INCLUDEDIR}/ebb)
install(TARGETS ebb RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The headers of the installed layers. Not kernels/cuda/: the cuda backend's internals, which
# include the CUDA toolkit's headers; a consumer reaches the backend through Device.
install(DIRECTORY kernels allocator offload engine
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ebb
  FILES_MATCHING PATTERN "*.h"
  PATTERN "kernels/cuda" EXCLUDE)

set(ebb_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/ebb)
install(EXPORT ebbTargets NAMESPACE ebb:: DESTINATION ${ebb_cmake_dir})
# Found again by the consumer's find_dependency: the toolkit this build compiled against.
set(ebb_cuda_toolkit_root "")
if(TARGET ebb_kernels_cuda)
  get_filename_component(ebb_cuda_toolkit_root "${CUDAToolkit_BIN_DIR}" DIRECTORY)
endif()
configure_package_config_file(cmake/ebbConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ebbConfig.cmake INSTALL_DESTINATION ${ebb_cmake_dir})
# 0.x: a minor release may change the API (semantic versioning), so only the same 0.y is
# compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ebbConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ebbConfig.cmake ${PROJECT_BINARY_DIR}/ebbConfigVersion.cmake
  DESTINATION ${ebb_cmake_dir})
