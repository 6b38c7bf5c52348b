/*
 * clgrad/clgrad.h — the umbrella header: train neural networks in C on any
 * OpenCL device or on the CPU.
 *
 *     #include <clgrad/clgrad.h>
 *
 * Headers by concern:
 *   status.h   status codes, cg_status_str
 *   version.h  CLGRAD_VERSION_* macros, cg_version()
 *   context.h  context (backend, device, RNG, errors, scopes), registry
 *   tensor.h   n-d float32 tensors, host copies, printing
 *   ops.h      differentiable ops and views, autograd (cg_backward)
 *   nn.h       modules (Linear, activations, Sequential) and losses
 *   optim.h    SGD, Adam/AdamW, RMSProp
 *   data.h     CSV and IDX import, preprocessing, Dataset and DataLoader
 *   io.h       checkpoints (safetensors): save, load, resume
 *   dist.h     data-parallel training over MPI (one rank without it)
 *   backend.h  the backend plugin ABI (for backend authors)
 *
 * Thread-safety: one context per thread; a context and its tensors must not
 * be used from two threads at once. The plugin registry and the OpenCL
 * program cache are locked, so several contexts may live in one process.
 */
#ifndef CLGRAD_CLGRAD_H
#define CLGRAD_CLGRAD_H

#include "clgrad/status.h"
#include "clgrad/version.h"
#include "clgrad/backend.h"
#include "clgrad/context.h"
#include "clgrad/tensor.h"
#include "clgrad/ops.h"
#include "clgrad/nn.h"
#include "clgrad/optim.h"
#include "clgrad/data.h"
#include "clgrad/io.h"
#include "clgrad/dist.h"

#endif
