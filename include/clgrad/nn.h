/* clgrad/nn.h — being written (see the overview once filled). */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H
#include "clgrad/tensor.h"
#endif
