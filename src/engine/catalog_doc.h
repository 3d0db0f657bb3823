/* The connector catalog printed for people: grouped by category, and as Markdown tables. */
#ifndef SL_ENGINE_CATALOG_DOC_H
#define SL_ENGINE_CATALOG_DOC_H

#include <stdio.h>

void sl_catalog_print(FILE *f);
void sl_catalog_markdown(FILE *f);

#endif
