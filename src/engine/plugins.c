/* Connector plugins: dlopen every *.so of the plugin directory, call its SL_PLUGIN_SYMBOL and add
 * the connectors it returns to the catalog (plugins.h says why a bad plugin stops the start). */
#include "engine/plugins.h"

#include "core/log.h"
#include "engine/kinds.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connectors one plugin may export: a list that lost its NULL end is reported, not read on. */
#define MAX_PER_PLUGIN 64

static int is_plugin_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dlerror()'s text without the "<path>: " it usually starts with (the message names the file
 * already). */
static const char *dl_reason(const char *path)
{
    const char *e = dlerror();
    size_t n = strlen(path);
    if (!e)
        return "unknown error";
    if (strncmp(e, path, n) == 0 && strncmp(e + n, ": ", 2) == 0)
        return e + n + 2;
    return e;
}

/* Loads one plugin file. On error the handle stays open when some of its connectors were already
 * added (the catalog points into it); the server exits anyway. */
static int load_one(const char *path, struct sl_err *err)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return sl_err_set(err, SL_E_INVAL, "bad_plugin", "plugin %s: cannot load: %s", path,
                          dl_reason(path));
    dlerror();
    sl_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, SL_PLUGIN_SYMBOL); /* the cast POSIX prescribes for dlsym */
    if (!entry) {
        sl_err_set(err, SL_E_INVAL, "bad_plugin",
                   "plugin %s: no symbol " SL_PLUGIN_SYMBOL
                   " (not a Sluice connector plugin; see examples/README.md)",
                   path);
        dlclose(h);
        return SL_E_INVAL;
    }
    const struct sl_connector *const *list = entry(&sl_host_default);
    if (!list) {
        sl_err_set(err, SL_E_INVAL, "bad_plugin",
                   "plugin %s: " SL_PLUGIN_SYMBOL "() returned NULL (it refused this sluice, "
                   "connector ABI %d)",
                   path, SL_CONNECTOR_ABI);
        dlclose(h);
        return SL_E_INVAL;
    }
    size_t n = 0;
    while (n < MAX_PER_PLUGIN && list[n])
        n++;
    if (n == MAX_PER_PLUGIN && list[n]) {
        sl_err_set(err, SL_E_INVAL, "bad_plugin",
                   "plugin %s: more than %d connectors (is its list NULL-terminated?)", path,
                   MAX_PER_PLUGIN);
        dlclose(h);
        return SL_E_INVAL;
    }
    /* Every connector's ABI first, so that a plugin is refused before any part of it is in the
     * catalog. abi is the first member in every version of struct sl_connector: reading it is
     * safe whatever the plugin was built against; nothing else is read before it matches. */
    for (size_t i = 0; i < n; i++)
        if (list[i]->abi != SL_CONNECTOR_ABI) {
            sl_err_set(err, SL_E_INVAL, "bad_plugin",
                       "plugin %s: built for connector ABI %u, this sluice has %d (rebuild it "
                       "against this sluice's include/sluice/connector.h)",
                       path, (unsigned)list[i]->abi, SL_CONNECTOR_ABI);
            dlclose(h);
            return SL_E_INVAL;
        }
    if (n == 0) {
        sl_warn("plugin %s: exports no connector; ignored", path);
        dlclose(h);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sl_connector *c = list[i];
        struct sl_err e = {0};
        if (sl_kinds_add(c, &e) < 0)
            return sl_err_set(err, e.code, "bad_plugin", "plugin %s: %s", path, e.msg);
        sl_info("plugin %s: connector kind %s (%s, %s)", path, c->name,
                c->direction == SL_INBOUND ? "inbound" : "outbound",
                c->category ? c->category : "utility");
    }
    return 0; /* h stays open for the life of the process */
}

int sl_plugins_load(const char *dir, struct sl_err *err)
{
    if (!dir || !*dir)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return sl_err_sys(err, SL_E_INVAL, "plugins: cannot open directory %s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_plugin_file(e->d_name))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **p = realloc(names, nc * sizeof(*p));
            if (!p) {
                rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
                goto done;
            }
            names = p;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            goto done;
        }
        n++;
    }
    if (n == 0)
        sl_warn("plugins: no *.so file in %s", dir);
    qsort(names, n, sizeof(*names), by_name);
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4352];
        /* a slash in the path makes dlopen take the file itself, never a library path search */
        snprintf(path, sizeof(path), "%s%s%s", dir, sep, names[i]);
        rc = load_one(path, err);
    }
done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}
