/* clgrad/ops.h — being written (see the overview once filled). */
#ifndef CLGRAD_OPS_H
#define CLGRAD_OPS_H
#include "clgrad/tensor.h"
#endif
