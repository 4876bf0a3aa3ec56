// XMESH_ASSERT: a bug check that stays on in release builds (cheap conditions only).
#pragma once

#include <cstdio>
#include <cstdlib>

#define XMESH_ASSERT(cond)                                                              \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
