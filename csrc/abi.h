// Generated from sidkernels/_abi.py by `python -m sidkernels.cuda_ext.abi_header`.
// Do not edit: change sidkernels/_abi.py and regenerate (tests/cuda_ext/test_build.py checks it).
#pragma once

// Storage dtypes of the kernels' buffers.
enum { SK_FLOAT32 = 0, SK_FLOAT16 = 1, SK_BFLOAT16 = 2 };
// Preconditioning kinds (the `kind` argument of the preconditioning, noise and raw-loss ops).
enum { SK_PRECOND_EDM = 0, SK_PRECOND_VP = 1, SK_PRECOND_VE = 2 };
// Distance kinds (the `kind` argument of the distance ops).
enum { SK_DISTANCE_L2 = 0, SK_DISTANCE_L1 = 1, SK_DISTANCE_PSEUDO_HUBER = 2 };

// EDM's VP schedule.
constexpr float SK_VP_BETA_D = 19.9f;
constexpr float SK_VP_BETA_MIN = 0.1f;
constexpr float SK_VP_M = 1000.0f;
