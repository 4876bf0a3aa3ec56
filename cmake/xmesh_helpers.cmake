# Identical setup for every target: xmesh_add_library / xmesh_add_test / xmesh_add_bench.
include_guard(GLOBAL)

# xmesh_add_library(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
function(xmesh_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} xmesh_options PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# xmesh_add_test(<name> SOURCES ... [DEPS ...] [LABELS ...]): one GoogleTest binary, tests discovered.
function(xmesh_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main xmesh_options)
  # Discovered tests take one ENVIRONMENT entry only, so the paths are compiled in as well
  # (tests/support/paths.hpp reads them).
  target_compile_definitions(${name} PRIVATE XMESH_BIN_DEFAULT="$<TARGET_FILE:xmesh>"
    XMESH_SOURCE_DIR_DEFAULT="${PROJECT_SOURCE_DIR}" XMESH_BUILD_DIR_DEFAULT="${PROJECT_BINARY_DIR}")
  set(props)
  if(ARG_LABELS)
    set(props PROPERTIES LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    PROPERTIES ENVIRONMENT "XMESH_BIN=$<TARGET_FILE:xmesh>"
    ${props})
endfunction()

# xmesh_add_bench(<name> SOURCES ... [DEPS ...]): a Google Benchmark binary (not run by ctest).
function(xmesh_add_bench name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark xmesh_options)
endfunction()
