/* Rivven pipeline files (docs/pipelines.md): `version`, `sources:` (name -> connector, topic,
 * config, transforms), `sinks:` (name -> connector, topics, consumer_group, config, rate_limit,
 * transforms), `settings:`, `broker:`. Loading validates the whole file the way the API
 * validates one connector (the catalog's kinds, their field tables and dialects) and reports
 * every problem as FILE:LINE:COL: path: message. Applying makes the registry hold exactly the
 * file's connectors: created, patched when their definition changed (a connector whose
 * definition did not change is left running with its positions), deleted when gone from the
 * file; each is managed by the file (the API refuses to change it). */
#ifndef SL_PIPELINE_PIPELINE_H
#define SL_PIPELINE_PIPELINE_H

#include "core/buf.h"
#include "engine/registry.h"

struct sl_store;
struct sl_pipeline;

/* Loads and validates path. Returns the number of errors (0: *out is the pipeline); every error
 * and warning goes to msgs, one line each ("FILE:LINE:COL: sources.pg.config.port: ..."),
 * warnings starting with "warning: " after the position. */
int sl_pipeline_load(const char *path, struct sl_pipeline **out, struct sl_buf *msgs);
/* The same for a file's text already read (name is used in the messages). */
int sl_pipeline_parse(const char *name, const char *text, size_t len, struct sl_pipeline **out,
                      struct sl_buf *msgs);
void sl_pipeline_free(struct sl_pipeline *p);

/* Makes the registry hold p's connectors (see above). 0, or a negative code with msgs saying
 * what was refused (a name taken by a connector of the API or of another file). */
int sl_pipeline_apply(struct sl_pipeline *p, struct sl_registry *reg, struct sl_store *store,
                      struct sl_buf *msgs);

/* The .yaml/.yml files of a directory (sorted), or the path itself if it is a file: loads and
 * applies each. 0, or the number of files refused. */
int sl_pipelines_run(const char *path, struct sl_registry *reg, struct sl_store *store,
                     struct sl_buf *msgs);

#endif
