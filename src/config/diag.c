/* Positioned diagnostics for the config loader: collect, sort, print. */
#include "config/internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void config_diag_add(struct config_diag *d, int line, int col, bool warning,
                            const char *fmt, va_list ap)
{
    char *text;

    if (d->n >= CONFIG_MAX_MESSAGES) {
        d->dropped++;
        return;
    }
    if (vasprintf(&text, fmt, ap) < 0) {
        d->oom = true;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct config_msg *m = realloc(d->msgs, cap * sizeof(*m));
        if (!m) {
            free(text);
            d->oom = true;
            return;
        }
        d->msgs = m;
        d->cap = cap;
    }
    d->msgs[d->n] = (struct config_msg){
        .line = line, .col = col, .warning = warning, .seq = d->n, .text = text,
    };
    d->n++;
}

void config_diag_error(struct config_diag *d, int line, int col, const char *fmt, ...)
{
    va_list ap;

    /* Counted even when storing fails, so a load never succeeds by accident. */
    d->errors++;
    va_start(ap, fmt);
    config_diag_add(d, line, col, false, fmt, ap);
    va_end(ap);
}

void config_diag_warning(struct config_diag *d, int line, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_diag_add(d, line, col, true, fmt, ap);
    va_end(ap);
}

static int config_msg_cmp(const void *a, const void *b)
{
    const struct config_msg *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void config_diag_flush(struct config_diag *d, FILE *out)
{
    if (d->n)
        qsort(d->msgs, d->n, sizeof(*d->msgs), config_msg_cmp);
    for (size_t i = 0; i < d->n; i++) {
        const struct config_msg *m = &d->msgs[i];
        const char *level = m->warning ? "warning" : "error";

        if (!out)
            ;
        else if (m->line > 0)
            fprintf(out, "%s:%d:%d: %s: %s\n", d->file, m->line, m->col, level, m->text);
        else
            fprintf(out, "%s: %s: %s\n", d->file, level, m->text);
        free(m->text);
    }
    if (d->dropped && out)
        fprintf(out, "%s: error: %zu more problems not shown\n", d->file, d->dropped);
    if (d->oom && out)
        fprintf(out, "%s: error: out of memory while reporting errors\n", d->file);
    free(d->msgs);
    d->msgs = NULL;
    d->n = d->cap = 0;
    d->dropped = 0;
    d->oom = false;
}
