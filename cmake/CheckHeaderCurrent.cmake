# Fails when the checked-in header differs from the one cargo generated.
#
#   cmake -DCHECKED_IN_HEADER=include/dist_worker.h
#         -DCARGO_BUILD_DIR=<cargo target dir>/release/build
#         -P cmake/CheckHeaderCurrent.cmake
#
# build.rs writes the header into OUT_DIR, i.e.
# <CARGO_BUILD_DIR>/dist-worker-<hash>/out/dist_worker.h; old hashes may
# linger there, so the newest one is the current one.
cmake_minimum_required(VERSION 3.16)

foreach(_var CHECKED_IN_HEADER CARGO_BUILD_DIR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "CheckHeaderCurrent.cmake: pass -D${_var}=...")
  endif()
endforeach()

file(GLOB _candidates "${CARGO_BUILD_DIR}/dist-worker-*/out/dist_worker.h")
if(NOT _candidates)
  message(FATAL_ERROR
    "no generated header under ${CARGO_BUILD_DIR}/dist-worker-*/out/: build first")
endif()

set(_generated "")
set(_newest 0)
foreach(_candidate IN LISTS _candidates)
  file(TIMESTAMP "${_candidate}" _mtime "%s" UTC)
  if(_mtime GREATER _newest)
    set(_newest ${_mtime})
    set(_generated "${_candidate}")
  endif()
endforeach()

execute_process(
  COMMAND "${CMAKE_COMMAND}" -E compare_files "${CHECKED_IN_HEADER}" "${_generated}"
  RESULT_VARIABLE _differs)
if(_differs)
  find_program(_diff diff)
  if(_diff)
    execute_process(COMMAND "${_diff}" -u "${CHECKED_IN_HEADER}" "${_generated}")
  endif()
  # Plain message(): printed on one line, as a developer will search for it.
  message("the checked-in header is stale; refresh with `DIST_WORKER_UPDATE_HEADER=1 cargo build`")
  message(FATAL_ERROR "${CHECKED_IN_HEADER} differs from ${_generated}")
endif()
message(STATUS "${CHECKED_IN_HEADER} matches ${_generated}")
