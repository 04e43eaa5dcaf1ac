# veil_unit_test(MODULE FILE [LINK libs...]): tests/unit/<module>/test_<file>.c as one ctest test.
function(veil_unit_test module file)
    cmake_parse_arguments(T "" "" "LINK" ${ARGN})
    set(target test_${module}_${file})
    add_executable(${target} ${CMAKE_SOURCE_DIR}/tests/unit/${module}/test_${file}.c)
    target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/tests
        ${CMAKE_SOURCE_DIR}/src/${module} ${CMAKE_SOURCE_DIR}/include)
    target_link_libraries(${target} PRIVATE veil_${module} ${T_LINK})
    add_test(NAME unit.${module}.${file} COMMAND ${target})
    set_tests_properties(unit.${module}.${file} PROPERTIES
        ENVIRONMENT "VEIL_SRC=${CMAKE_SOURCE_DIR};VEIL_SHARED=${CMAKE_SOURCE_DIR}/../shared"
        LABELS "unit;${module}")
endfunction()

# veil_fuzz_target(NAME SOURCE LINK libs...): a libFuzzer target when VEIL_FUZZ is on, and
# always a replay driver that runs fuzz/corpus/NAME/* as a ctest test.
function(veil_fuzz_target name)
    cmake_parse_arguments(F "" "" "LINK" ${ARGN})
    set(src ${CMAKE_SOURCE_DIR}/fuzz/${name}_fuzz.c)
    add_executable(replay_${name} ${src} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.c)
    target_include_directories(replay_${name} PRIVATE ${CMAKE_SOURCE_DIR}/include
        ${CMAKE_SOURCE_DIR}/src)
    target_link_libraries(replay_${name} PRIVATE ${F_LINK})
    add_test(NAME fuzz.replay.${name}
        COMMAND replay_${name} ${CMAKE_SOURCE_DIR}/fuzz/corpus/${name})
    set_tests_properties(fuzz.replay.${name} PROPERTIES LABELS "fuzz")
    if(VEIL_FUZZ)
        add_executable(fuzz_${name} ${src})
        target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/include
            ${CMAKE_SOURCE_DIR}/src)
        target_link_libraries(fuzz_${name} PRIVATE ${F_LINK})
        target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    endif()
endfunction()
