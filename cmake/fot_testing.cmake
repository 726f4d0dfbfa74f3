# Test helpers.
#
# fot_add_test(name SOURCES ... LIBS ... LABELS ...)
#   One GoogleTest executable; every test case becomes a ctest entry (gtest_discover_tests)
#   carrying LABELS. FOT_SOURCE_DIR and FOT_TEST_DATA are defined for the sources.
# fot_test_labels(target timeout label...)
#   gtest_discover_tests flattens list-valued properties: of LABELS "unit;io" only "unit"
#   survives (and TIMEOUT is lost). This re-applies the full list and the timeout once the
#   tests of `target` are discovered, from a ctest include file that runs after gtest's (it
#   reads the <target>_TESTS list that gtest_discover_tests defines).
# fot_add_mpi_test(name SOURCES ... LIBS ... NP 2 4 LABELS ...)
#   One executable with tests/mpi_gtest_main.cpp, one ctest entry per process count, run
#   under mpirun with --oversubscribe, root allowed, and a timeout so a deadlock fails.
# fot_add_baseline_isa_test(target label [gtest filter])
#   One more ctest entry, <target>.baseline_isa, that runs the whole executable with the CPU
#   kernels' run-time choices turned down to the baseline (no AMX, no AVX512_BF16, AVX2
#   instead of AVX-512): CPUs differ between CI runs, and a machine with the newer
#   instructions then also checks the paths that an AVX2-only machine takes.
include(GoogleTest)
find_package(GTest REQUIRED)

set(FOT_TEST_DATA ${PROJECT_SOURCE_DIR}/tests/data)

# The tests' own sources at -O1 in optimised builds: what they test (the libraries, the
# emulated kernels) keeps the build type's -O3, while the GoogleTest-heavy test files compile
# ~12% faster (CI compiles ~100 of them on 2 cores). A test file whose own loops are hot (the
# naive references) gets -O3 back as a source property.
add_library(fot_test_options INTERFACE)
target_compile_options(fot_test_options INTERFACE
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Release,RelWithDebInfo>>:-O1>)

function(fot_add_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_LIBS} GTest::gtest GTest::gtest_main fot_options
                        fot_test_options)
  target_compile_definitions(${name} PRIVATE
    FOT_SOURCE_DIR="${PROJECT_SOURCE_DIR}" FOT_TEST_DATA="${FOT_TEST_DATA}"
    FOT_BINARY_DIR="${PROJECT_BINARY_DIR}" FOTRT_EXE="$<TARGET_FILE:fotrt>")
  # gtest_discover_tests flattens list-valued properties: escape the label separators.
  string(REPLACE ";" "\\;" labels "${A_LABELS}")
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${labels}" TIMEOUT ${A_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()

function(fot_test_labels target timeout)
  set(script ${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake)
  file(WRITE ${script}
    "if(DEFINED ${target}_TESTS)\n"
    "  set_tests_properties(\${${target}_TESTS} PROPERTIES LABELS \"${ARGN}\" TIMEOUT ${timeout})\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${script})
endfunction()

function(fot_add_mpi_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;NP;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  # The shared main, compiled once for all of them.
  if(NOT TARGET fot_mpi_gtest_main)
    add_library(fot_mpi_gtest_main STATIC ${PROJECT_SOURCE_DIR}/tests/mpi_gtest_main.cpp)
    target_link_libraries(fot_mpi_gtest_main PUBLIC GTest::gtest MPI::MPI_CXX fot_core fot_options
                          PRIVATE fot_test_options)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_LIBS} fot_mpi_gtest_main GTest::gtest MPI::MPI_CXX
                        fot_options fot_test_options)
  target_compile_definitions(${name} PRIVATE
    FOT_SOURCE_DIR="${PROJECT_SOURCE_DIR}" FOT_TEST_DATA="${FOT_TEST_DATA}"
    FOT_BINARY_DIR="${PROJECT_BINARY_DIR}" FOTRT_EXE="$<TARGET_FILE:fotrt>")
  foreach(np IN LISTS A_NP)
    add_test(NAME ${name}_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe
                     ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${name}> ${MPIEXEC_POSTFLAGS})
    set_tests_properties(${name}_np${np} PROPERTIES
      LABELS "mpi;${A_LABELS}" TIMEOUT ${A_TIMEOUT} PROCESSORS ${np}
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1")
  endforeach()
endfunction()

function(fot_add_baseline_isa_test target label)
  set(args)
  if(ARGC GREATER 2)
    set(args --gtest_filter=${ARGV2})
  endif()
  add_test(NAME ${target}.baseline_isa COMMAND ${target} ${args})
  set_tests_properties(${target}.baseline_isa PROPERTIES LABELS ${label} TIMEOUT 300
    ENVIRONMENT "FOT_CPU_AMX=0;FOT_CPU_BF16_DOT=0;FOT_CPU_AVX512=0")
endfunction()
