/* proxy/grpc: gRPC calls recognised by Content-Type, grpc-timeout read as
 * the spec writes it (and ignored otherwise), HTTP statuses mapped to
 * grpc-status, grpc-message percent-encoded. */
#include <stdint.h>
#include <string.h>

#include "proxy/grpc.h"
#include "test.h"

static uint64_t timeout(const char *v)
{
    return grpc_timeout_ms(v, strlen(v));
}

static void test_timeouts(void)
{
    static const struct {
        const char *value;
        uint64_t ms;
    } valid[] = {
        {"1H", 3600000},      {"2M", 120000},     {"3S", 3000},       {"200m", 200},
        {"1500u", 2},         {"1000u", 1},       {"1u", 1},          {"1n", 1},
        {"999999n", 1},       {"1000001n", 2},    {"00000010m", 10},  {"99999999m", 99999999},
        {"99999999H", 99999999ull * 3600000ull},  {"5S", 5000},       {"0001S", 1000},
    };
    /* Ignored as if absent: not the spec's form, or a value of 0. */
    static const char *const invalid[] = {
        "",          "m",          "5",         "5s",        "5ms",       "5 m",      " 5m",
        "5m ",       "-5m",        "+5m",       "5.0S",      "123456789m", "0m",      "00000000H",
        "0n",        "5x",         "1h",        "5\0m",      "0x10m",     "1e3m",      "5mm",
        "m5",        "\xff" "5m",  "5k",        "18446744073709551616n",
    };

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        uint64_t got = timeout(valid[i].value);

        if (got != valid[i].ms)
            fprintf(stderr, "grpc-timeout %s: %llu ms\n", valid[i].value, (unsigned long long)got);
        CHECK(got == valid[i].ms);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        uint64_t got = timeout(invalid[i]);

        if (got)
            fprintf(stderr, "grpc-timeout \"%s\" read as %llu ms\n", invalid[i],
                    (unsigned long long)got);
        CHECK_EQ_INT(got, 0);
    }
    /* Not NUL-ended: only len bytes are read. */
    CHECK_EQ_INT(grpc_timeout_ms("20mXYZ", 3), 20);
    CHECK_EQ_INT(grpc_timeout_ms("5m", 1), 0);
    CHECK_EQ_INT(grpc_timeout_ms("5\0m", 3), 0);
}

static bool grpc_type(const char *v)
{
    return grpc_content_type(v, strlen(v));
}

static void test_content_types(void)
{
    CHECK(grpc_type("application/grpc"));
    CHECK(grpc_type("application/grpc+proto"));
    CHECK(grpc_type("application/grpc+json"));
    CHECK(grpc_type("application/grpc;charset=utf-8"));
    CHECK(grpc_type("Application/GRPC"));
    CHECK(!grpc_type("application/grpc-web"));
    CHECK(!grpc_type("application/grpc-web+proto"));
    CHECK(!grpc_type("application/grpc-web-text"));
    CHECK(!grpc_type("application/grpcx"));
    CHECK(!grpc_type("application/grp"));
    CHECK(!grpc_type("application/json"));
    CHECK(!grpc_type(""));
    CHECK(!grpc_type(" application/grpc"));
    CHECK(!grpc_content_type("application/grpc", 15));
}

static void test_status_mapping(void)
{
    CHECK_EQ_INT(grpc_status_from_http(400), 13);
    CHECK_EQ_INT(grpc_status_from_http(401), 16);
    CHECK_EQ_INT(grpc_status_from_http(403), 7);
    CHECK_EQ_INT(grpc_status_from_http(404), 12);
    CHECK_EQ_INT(grpc_status_from_http(429), 14);
    CHECK_EQ_INT(grpc_status_from_http(502), 14);
    CHECK_EQ_INT(grpc_status_from_http(503), 14);
    CHECK_EQ_INT(grpc_status_from_http(504), 14);
    CHECK_EQ_INT(grpc_status_from_http(408), 2);
    CHECK_EQ_INT(grpc_status_from_http(413), 2);
    CHECK_EQ_INT(grpc_status_from_http(431), 2);
    CHECK_EQ_INT(grpc_status_from_http(500), 2);
    CHECK_EQ_INT(grpc_status_from_http(418), 2);
}

static void test_message_encoding(void)
{
    char out[GRPC_MESSAGE_MAX + 1];

    CHECK_EQ_INT(grpc_message_encode(out, sizeof(out), "no route\n", 9), 8);
    CHECK_EQ_STR(out, "no route");
    grpc_message_encode(out, sizeof(out), "100% sure: ~ok~", 15);
    CHECK_EQ_STR(out, "100%25 sure: ~ok~");
    grpc_message_encode(out, sizeof(out), "a\r\nb\tc\x7f\xc3\xa9", 9);
    CHECK_EQ_STR(out, "a%0D%0Ab%09c%7F%C3%A9");
    grpc_message_encode(out, sizeof(out), "", 0);
    CHECK_EQ_STR(out, "");
    grpc_message_encode(out, sizeof(out), "\n", 1);
    CHECK_EQ_STR(out, "");
    /* Cut where the next byte does not fit whole: never half a %XX. */
    CHECK_EQ_INT(grpc_message_encode(out, 6, "abc%d", 5), 3);
    CHECK_EQ_STR(out, "abc");
    CHECK_EQ_INT(grpc_message_encode(out, 7, "abc%d", 5), 6);
    CHECK_EQ_STR(out, "abc%25");
    CHECK_EQ_INT(grpc_message_encode(out, 1, "abc", 3), 0);
    CHECK_EQ_STR(out, "");
    /* A long text stops at the size given. */
    {
        char big[2000];

        memset(big, '\x01', sizeof(big));
        CHECK(grpc_message_encode(out, sizeof(out), big, sizeof(big)) <= GRPC_MESSAGE_MAX);
        CHECK(strlen(out) % 3 == 0 && strncmp(out, "%01%01", 6) == 0);
    }
}

int main(void)
{
    test_timeouts();
    test_content_types();
    test_status_mapping();
    test_message_encoding();
    TEST_END();
}
