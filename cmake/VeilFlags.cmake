# Warning set (STYLE.md rule 34) and sanitizer switches.
set(VEIL_WARNINGS
    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 -Wundef
    -Wcast-qual -Wimplicit-fallthrough -Wnull-dereference)
if(VEIL_WERROR)
    list(APPEND VEIL_WARNINGS -Werror)
endif()
add_compile_options(${VEIL_WARNINGS})
add_compile_definitions(_GNU_SOURCE)

set(VEIL_SAN_FLAGS "")
if(VEIL_ASAN)
    list(APPEND VEIL_SAN_FLAGS -fsanitize=address)
endif()
if(VEIL_UBSAN)
    list(APPEND VEIL_SAN_FLAGS -fsanitize=undefined -fno-sanitize-recover=all)
endif()
if(VEIL_TSAN)
    list(APPEND VEIL_SAN_FLAGS -fsanitize=thread)
endif()
if(VEIL_SAN_FLAGS)
    add_compile_options(${VEIL_SAN_FLAGS} -fno-omit-frame-pointer)
    add_link_options(${VEIL_SAN_FLAGS})
endif()
if(VEIL_FUZZ)
    add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# veil_module(NAME SOURCES... LINK deps...): one static library per module.
function(veil_module name)
    cmake_parse_arguments(M "" "" "SOURCES;LINK" ${ARGN})
    add_library(veil_${name} STATIC ${M_SOURCES})
    target_include_directories(veil_${name}
        PUBLIC ${CMAKE_SOURCE_DIR}/include
        PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(veil_${name} PUBLIC ${M_LINK})
endfunction()
