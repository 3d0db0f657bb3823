/* Connector plugins (`serve --plugins DIR`, the Plugin SDK of the Rivven seed): out-of-tree
 * connector kinds loaded from shared objects built against include/sluice/connector.h only
 * (examples/README.md shows how). A plugin exports SL_PLUGIN_SYMBOL, a function that returns a
 * NULL-terminated list of its connectors; each one is checked (its abi against
 * SL_CONNECTOR_ABI, then sl_kinds_add: name taken, missing ops) and added to the catalog.
 *
 * A plugin that cannot be loaded stops the server from starting: running without a connector
 * kind the user configured would only lose data later. Loaded plugins stay mapped until the
 * process exits (workers and the catalog hold pointers into them). */
#ifndef SL_ENGINE_PLUGINS_H
#define SL_ENGINE_PLUGINS_H

#include "core/err.h"

/* Loads every `*.so` of dir, in name order (byte order, not the locale's). dir NULL or "" loads
 * nothing. 0, or a negative code with err saying "plugin <file>: <why>" for the first plugin
 * that failed. Main thread, before the registry is opened (it drops connectors of unknown
 * kinds) and before any other thread exists. */
int sl_plugins_load(const char *dir, struct sl_err *err);

#endif
