// Everything in optim/: Adam, AdamW, SGD, parameter groups, LR schedules, gradient clipping and value checks.
#pragma once
#include "optim/adam.h"
#include "optim/clip.h"
#include "optim/finite.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
