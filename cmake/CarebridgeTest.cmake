# Every test runs with this environment: the source tree, and what the
# ThreadSanitizer build needs (ignored by the others).
set(CB_TEST_ENV "CB_SRC=${CMAKE_SOURCE_DIR}"
    "TSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/sanitizers/tsan.supp"
    "CB_LOG_DIR=${CMAKE_BINARY_DIR}/test-logs")

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
    ENVIRONMENT "CB_BIN=${CMAKE_BINARY_DIR}/bin;${CB_TEST_ENV}"
    FIXTURES_REQUIRED cb_logs)
endfunction()

# The logs every integration test's processes wrote are kept in test-logs
# (harness.py), emptied before the first and scanned after the last for an
# NHS or CHI number, or a name or birth date from the test data.
function(cb_log_scan)
  add_test(NAME logs.clear COMMAND ${CMAKE_COMMAND} -E rm -rf ${CMAKE_BINARY_DIR}/test-logs)
  add_test(NAME logs.scan
           COMMAND ${PYTHON3} ${CMAKE_SOURCE_DIR}/tests/tools/logscan.py --values-from ${CMAKE_SOURCE_DIR}/tests
                   --values-from ${CMAKE_SOURCE_DIR}/cli ${CMAKE_BINARY_DIR}/test-logs)
  set_tests_properties(logs.clear PROPERTIES FIXTURES_SETUP cb_logs LABELS integration)
  set_tests_properties(logs.scan PROPERTIES FIXTURES_CLEANUP cb_logs LABELS integration TIMEOUT 300)
  add_test(NAME unit.logscan COMMAND ${PYTHON3} -m unittest -v test_logscan
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/tools)
  set_tests_properties(unit.logscan PROPERTIES LABELS unit TIMEOUT 60)
endfunction()
