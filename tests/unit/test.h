/* Minimal unit-test harness: CHECK records a failure and goes on, TEST_MAIN
 * prints the closing line every unit binary ends with:
 *   "<file>: N checks, M failed"  and exits non-zero when M > 0. */
#ifndef SLUICE_TEST_H
#define SLUICE_TEST_H

#include <stdio.h>
#include <string.h>

static int test_checks, test_failed;

#define CHECK(cond) do { \
    test_checks++; \
    if (!(cond)) { \
        test_failed++; \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    } \
} while (0)

#define CHECK_EQ_INT(a, b) do { \
    long long _a = (long long)(a), _b = (long long)(b); \
    test_checks++; \
    if (_a != _b) { \
        test_failed++; \
        fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", \
                __FILE__, __LINE__, #a, #b, _a, _b); \
    } \
} while (0)

#define CHECK_EQ_STR(a, b) do { \
    const char *_a = (a), *_b = (b); \
    test_checks++; \
    if (!_a || !_b || strcmp(_a, _b) != 0) { \
        test_failed++; \
        fprintf(stderr, "%s:%d: check failed: %s == %s (\"%s\" != \"%s\")\n", \
                __FILE__, __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); \
    } \
} while (0)

#define TEST_END() do { \
    printf("%s: %d checks, %d failed\n", __FILE__, test_checks, test_failed); \
    return test_failed ? 1 : 0; \
} while (0)

#endif
