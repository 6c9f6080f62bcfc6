/* libFuzzer target: arbitrary bytes as a config file. Every input must end in
 * a loaded config or clean errors, never a crash, leak or hang. */
#include "config/config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libfyaml 0.7.12 itself leaks a buffer on single-quoted scalars with five or
 * more '' escapes in a row ('a''''''''''b'); nothing of ours is allocated
 * from inside libfyaml, so this hides only its own leaks. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libfyaml.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Opened once: the messages are produced (and so exercised) but not kept. */
    static FILE *devnull;
    struct config *cfg = NULL;

    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (config_load_string("fuzz.yaml", (const char *)data, size, devnull, &cfg) == 0)
        config_free(cfg);
    return 0;
}
