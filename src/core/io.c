#include "core/io.h"

#include <unistd.h>

struct sl_io_ops sl_io = {.pwrite = pwrite, .fdatasync = fdatasync};
