/*
 * test_tls13.c - the TLS 1.3 record layer (worker/tls13.c) between two
 * states made by tls13_attach() from fixed traffic secrets: ours, and
 * the client's (the same secrets swapped), over a socketpair.  What
 * black-box tests cannot reach lives here: sequence numbers near 2^64
 * (RFC 8446 section 5.3).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "worker/worker.h"
#include "worker/tls13.h"

/* tls13.c and tls.c call into the rest of the worker: not needed here. */
void conn_want_flush(struct conn *c) { (void)c; }
void presence_session_gone(struct conn *c) { (void)c; }
void bind_release(struct conn *c) { (void)c; }
struct ssl_st;
void s2s_tls_done(struct conn *c, struct ssl_st *ssl);
void s2s_tls_done(struct conn *c, struct ssl_st *ssl) { (void)c; (void)ssl; }

static struct config *cfg;
static struct conn server, client;

static void setup(void)
{
	static const unsigned char csecret[32] = "client traffic secret, 32 bytes";
	static const unsigned char ssecret[32] = "server traffic secret, 32 bytes";
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cfg = config_new();
	memset(&server, 0, sizeof(server));
	memset(&client, 0, sizeof(client));
	server.fd = sv[0];
	client.fd = sv[1];
	server.id = 1;
	client.id = 2;
	strcpy(server.peer, "server-side");
	strcpy(client.peer, "client-side");
	buf_init(&server.out, 0);
	buf_init(&client.out, 0);
	cr_assert_eq(tls13_attach(&server, 0x1301, csecret, ssecret, 32, cfg), 0);
	cr_assert_eq(tls13_attach(&client, 0x1301, ssecret, csecret, 32, cfg), 0);
}

static void teardown(void)
{
	tls13_free(&server);
	tls13_free(&client);
	buf_free(&server.out);
	buf_free(&client.out);
	close(server.fd);
	close(client.fd);
	config_free(&cfg);
}

TestSuite(tls13, .init = setup, .fini = teardown);

/* from sends text; to reads it back (one read). */
static void pass(struct conn *from, struct conn *to, const char *text)
{
	char buf[2 * TLS13_MAX_RECORD];
	cr_assert_eq(buf_append(&from->out, text, strlen(text)), 0);
	cr_assert_eq(tls13_flush(from), 0);
	ssize_t n = tls13_read(to, buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)strlen(text), "read %zd", n);
	cr_assert_eq(memcmp(buf, text, strlen(text)), 0);
}

Test(tls13, records_both_ways)
{
	pass(&client, &server, "<stream:stream>");
	pass(&server, &client, "<stream:features/>");
	pass(&client, &server, "<presence/>");
}

/* Our sending key is updated before its sequence number could wrap:
 * the record goes out under a new key, and the peer follows. */
Test(tls13, write_sequence_does_not_wrap)
{
	tls13_test_set_seq(&server, 0, UINT64_MAX - 1);
	tls13_test_set_seq(&client, UINT64_MAX - 1, 0);
	pass(&server, &client, "one");
	pass(&server, &client, "two");
}

/* A read sequence number that would wrap ends the connection quietly:
 * no record is opened under a reused nonce, and no fatal alert goes out
 * (the client did nothing wrong): close_notify follows at the close. */
Test(tls13, read_sequence_does_not_wrap)
{
	char buf[2 * TLS13_MAX_RECORD];
	tls13_test_set_seq(&server, UINT64_MAX, 0);
	cr_assert_eq(buf_append(&client.out, "x", 1), 0);
	cr_assert_eq(tls13_flush(&client), 0);
	cr_assert_eq(tls13_read(&server, buf, sizeof(buf)), -1);
	cr_assert(tls13_eof(&server));
	errno = 0;
	cr_assert_eq(read(client.fd, buf, sizeof(buf)), -1,
		     "the server wrote something");
	cr_assert_eq(errno, EAGAIN);
}
