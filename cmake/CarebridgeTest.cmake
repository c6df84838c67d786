# Every test runs with this environment: the source tree, and what the
# ThreadSanitizer build needs (ignored by the others).
set(CB_TEST_ENV "CB_SRC=${CMAKE_SOURCE_DIR}"
    "TSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/sanitizers/tsan.supp")

# cb_unit_test(NAME SOURCES a.c b.c LIBS x y [TIMEOUT s])
# One cmocka executable, one ctest, with a timeout: a hung test fails, it never stalls CI.
function(cb_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${name} ${T_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME unit.${name} COMMAND ${name})
  set_tests_properties(unit.${name} PROPERTIES ENVIRONMENT "${CB_TEST_ENV}")
  set_tests_properties(unit.${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS unit)
endfunction()

# cb_integration_test(NAME script.py [TIMEOUT s])
# Runs a Python test against the real binaries in build/bin.
function(cb_integration_test name script)
  cmake_parse_arguments(T "" "TIMEOUT" "" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME integration.${name}
           COMMAND ${PYTHON3} -m unittest -v ${script}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(integration.${name} PROPERTIES
    TIMEOUT ${T_TIMEOUT} LABELS integration
    ENVIRONMENT "CB_BIN=${CMAKE_BINARY_DIR}/bin;${CB_TEST_ENV}")
endfunction()
