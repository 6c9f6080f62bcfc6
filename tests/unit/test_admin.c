/* Admin module: the JSON reader's strictness, JSON string output, and the
 * metrics exposition: counters summed over workers, series ordering, and a
 * scrape of 1,000 backends well under 100 ms. */
#include <stdlib.h>
#include <time.h>

#include "admin/internal.h"
#include "admin/metrics.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/runtime.h"
#include "test.h"

static void test_json_good(void)
{
    static const char text[] =
        " {\"weight\": 5, \"s\": \"a\\u00e9\\ud83d\\ude00\\n\", \"a\": [1, -2.5e3, true, null],"
        " \"o\": {}} ";
    const char *err = NULL;
    struct admin_json *j = admin_json_parse(text, strlen(text), &err);

    CHECK(j != NULL);
    if (!j) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_EQ_INT(j->type, ADMIN_JSON_OBJECT);
    CHECK_EQ_INT(j->n, 4);
    CHECK_EQ_INT(admin_json_int(j, "weight"), 5);
    CHECK_EQ_STR(admin_json_str(j, "s"), "a\xc3\xa9\xf0\x9f\x98\x80\n");
    CHECK_EQ_INT(admin_json_get(j, "a")->n, 4);
    CHECK(!admin_json_get(j, "a")->child->next->is_int);
    CHECK(admin_json_get(j, "a")->child->next->number == -2500.0);
    CHECK(admin_json_get(j, "a")->child->next->next->boolean);
    CHECK_EQ_INT(admin_json_get(j, "o")->type, ADMIN_JSON_OBJECT);
    CHECK(admin_json_get(j, "missing") == NULL);
    admin_json_free(j);
}

static void test_json_bad(void)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "01", "1.",
        "-", "1e", "+1", ".5", "tru", "nul", "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\u0000\"", "\"tab\there\"", "{a:1}", "{'a':1}", "1 2", "[]]",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "NaN", "Infinity", "{\"weight\": 5} x",
        /* not UTF-8: a stray continuation byte, an overlong '/', a cut
         * sequence, an encoded surrogate, a code point above U+10FFFF */
        "\"\x80\"", "\"\xc0\xaf\"", "\"\xc3\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = NULL;
        struct admin_json *j = admin_json_parse(bad[i], strlen(bad[i]), &err);
        CHECK(j == NULL);
        CHECK(err != NULL);
        if (j) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            admin_json_free(j);
        }
    }
    /* Big integers stay exact up to int64, beyond that they are not "int". */
    {
        const char *err;
        struct admin_json *j = admin_json_parse("9223372036854775807", 19, &err);
        CHECK(j && j->is_int && j->integer == INT64_MAX);
        admin_json_free(j);
        j = admin_json_parse("9223372036854775808", 19, &err);
        CHECK(j && !j->is_int);
        admin_json_free(j);
    }
}

static void test_json_out(void)
{
    struct admin_buf b;

    admin_buf_init(&b);
    admin_buf_json_str(&b, "a\"b\\c\n\x01z");
    CHECK_EQ_STR(b.p, "\"a\\\"b\\\\c\\n\\u0001z\"");
    /* UTF-8 passes; a byte that is not part of it becomes U+FFFD. */
    b.len = 0;
    admin_buf_json_str(&b, "\xc3\xa9\xff.\xc3(\xed\xa0\x80\xf0\x9f\x98\x80\xe2\x82");
    CHECK_EQ_STR(b.p, "\"\xc3\xa9\\ufffd.\\ufffd(\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80"
                      "\\ufffd\\ufffd\"");
    b.len = 0;
    admin_buf_u64(&b, 0);
    admin_buf_puts(&b, " ");
    admin_buf_u64(&b, UINT64_MAX);
    CHECK_EQ_STR(b.p, "0 18446744073709551615");
    b.len = 0;
    for (int i = 0; i < 1000; i++)
        admin_buf_printf(&b, "%04d", i);
    CHECK_EQ_INT(b.len, 4000);
    CHECK(!b.oom);
    admin_buf_free(&b);
}

/* The value of the first line starting with prefix, or -1. */
static long long metric(const char *text, const char *prefix)
{
    const char *p = text;

    while ((p = strstr(p, prefix))) {
        if (p == text || p[-1] == '\n')
            return atoll(p + strlen(prefix));
        p++;
    }
    return -1;
}

static void test_metrics(void)
{
    enum { NB = 1000, NW = 2 };
    struct admin_buf cfgtext, out;
    struct config *cfg = NULL;
    struct runtime rt;
    struct worker w[NW];
    struct timespec t0, t1;
    double ms;

    admin_buf_init(&cfgtext);
    admin_buf_puts(&cfgtext, "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: big},\n"
                             "            {name: l4, bind: 127.0.0.1:8081, mode: tcp, pool: small}]\n"
                             "pools:\n  - name: small\n    backends: [{name: s1, address: 127.0.0.1:1}]\n"
                             "  - name: big\n    health_check: {type: tcp}\n    backends:\n");
    for (int i = 0; i < NB; i++)
        admin_buf_printf(&cfgtext, "      - {name: b%d, address: 127.0.%d.%d:80}\n", i, i / 250,
                         i % 250 + 1);
    CHECK_EQ_INT(config_load_string("big.yaml", cfgtext.p, cfgtext.len, stderr, &cfg), 0);
    admin_buf_free(&cfgtext);
    if (!cfg)
        return;
    CHECK_EQ_INT(runtime_init(&rt, cfg), 0);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NW; i++) {
        w[i].rt = &rt;
        CHECK_EQ_INT(metrics_worker_init(&w[i]), 0);
    }

    /* Every backend answers 200 on both workers; b0 also a 503 and a slow
     * one; a request no pool took (404 from the router). */
    for (int k = 0; k < NW; k++)
        for (int i = 0; i < NB; i++) {
            struct access_http rec = { .status = 200, .backend = &rt.pools[1].backends[i],
                                       .total_us = 700, .bytes_in = 3, .bytes_out = 10,
                                       .tries = 1 };
            metrics_http_request(&w[k], &rt.listeners[0], &rt.pools[1], &rec);
        }
    {
        struct access_http r503 = { .status = 503, .backend = &rt.pools[1].backends[0],
                                    .total_us = 31000000, .tries = 2 };
        struct access_http r404 = { .status = 404, .total_us = 10 };
        struct access_l4 l4 = { .tries = 3 };
        metrics_http_request(&w[0], &rt.listeners[0], &rt.pools[1], &r503);
        metrics_http_request(&w[1], &rt.listeners[0], NULL, &r404);
        metrics_l4_session(&w[1], &rt.pools[0], &l4);
    }

    admin_buf_init(&out);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    metrics_render(&out, &rt, w, NW, 0, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(!out.oom);
    CHECK(ms < 100.0);
    if (ms >= 100.0)
        fprintf(stderr, "  metrics scrape of %d backends took %.1f ms\n", NB, ms);

    CHECK_EQ_INT(metric(out.p, "sluice_requests_total{listener=\"web\",pool=\"big\",backend=\"b0\",code=\"200\"} "), 2);
    CHECK_EQ_INT(metric(out.p, "sluice_requests_total{listener=\"web\",pool=\"big\",backend=\"b999\",code=\"200\"} "), 2);
    CHECK_EQ_INT(metric(out.p, "sluice_requests_total{listener=\"web\",pool=\"big\",backend=\"b0\",code=\"503\"} "), 1);
    CHECK_EQ_INT(metric(out.p, "sluice_requests_total{listener=\"web\",pool=\"\",backend=\"\",code=\"404\"} "), 1);
    CHECK_EQ_INT(metric(out.p, "sluice_request_duration_seconds_bucket{pool=\"big\",le=\"0.0005\"} "), 0);
    CHECK_EQ_INT(metric(out.p, "sluice_request_duration_seconds_bucket{pool=\"big\",le=\"0.001\"} "), 2 * NB);
    CHECK_EQ_INT(metric(out.p, "sluice_request_duration_seconds_bucket{pool=\"big\",le=\"30\"} "), 2 * NB);
    CHECK_EQ_INT(metric(out.p, "sluice_request_duration_seconds_bucket{pool=\"big\",le=\"+Inf\"} "), 2 * NB + 1);
    CHECK_EQ_INT(metric(out.p, "sluice_request_duration_seconds_count{pool=\"big\"} "), 2 * NB + 1);
    CHECK_EQ_INT(metric(out.p, "sluice_bytes_total{listener=\"web\",direction=\"in\"} "), 3 * 2 * NB);
    CHECK_EQ_INT(metric(out.p, "sluice_bytes_total{listener=\"web\",direction=\"out\"} "), 10 * 2 * NB);
    CHECK_EQ_INT(metric(out.p, "sluice_retries_total{pool=\"big\"} "), 1);
    CHECK_EQ_INT(metric(out.p, "sluice_retries_total{pool=\"small\"} "), 2);
    CHECK_EQ_INT(metric(out.p, "sluice_backend_up{pool=\"big\",backend=\"b500\"} "), 1);
    CHECK_EQ_INT(metric(out.p, "sluice_backend_state{pool=\"big\",backend=\"b500\",state=\"UP\"} "), 1);
    CHECK_EQ_INT(metric(out.p, "sluice_backend_state{pool=\"big\",backend=\"b500\",state=\"DOWN\"} "), 0);
    CHECK_EQ_INT(metric(out.p, "sluice_health_checks_total{pool=\"big\",backend=\"b1\",result=\"fail\"} "), 0);
    CHECK_EQ_INT(metric(out.p, "sluice_health_checks_total{pool=\"small\",backend=\"s1\",result=\"fail\"} "), -1);
    /* Each family's HELP and TYPE come once, before its samples. */
    CHECK(strstr(out.p, "# TYPE sluice_requests_total counter\n") != NULL);
    CHECK(strstr(strstr(out.p, "# TYPE sluice_requests_total") + 1, "# TYPE sluice_requests_total") == NULL);

    admin_buf_free(&out);
    for (int i = 0; i < NW; i++)
        metrics_worker_free(&w[i]);
    runtime_destroy(&rt);
    config_free(cfg);
}

int main(void)
{
    clock_update();
    test_json_good();
    test_json_bad();
    test_json_out();
    test_metrics();
    TEST_END();
}
