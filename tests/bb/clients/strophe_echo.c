/*
 * strophe_echo.c - a small libstrophe client for the black-box tests
 * (tests/bb/test_clients.py builds it with gcc and pkg-config).
 *
 * usage: strophe_echo JID PASSWORD HOST PORT SECONDS [MAXMSGS [direct]]
 *
 * Logs in with TLS (STARTTLS, or direct TLS when the 7th argument is
 * "direct"), trusting the server's self-signed certificate, sends initial
 * presence and prints "READY <bound jid>".  Every <message/> with a body
 * is printed as "MSG <from> <body>" and answered with "echo: <body>".
 * Exits 0 after MAXMSGS answers (0 = no limit) or after SECONDS; exits 1
 * when the connection fails or ends early, 2 on bad usage.  Each line of
 * output is flushed at once.  STROPHE_DEBUG=1 in the environment turns on
 * libstrophe's debug log on stderr.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

static volatile sig_atomic_t stop_requested;
static int connected, finished, failed, answered, max_msgs;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int message_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza,
			   void *userdata)
{
	xmpp_ctx_t *ctx = userdata;
	const char *type = xmpp_stanza_get_type(stanza);
	const char *from = xmpp_stanza_get_from(stanza);
	char *body;

	if (type != NULL && strcmp(type, "error") == 0)
		return 1;
	body = xmpp_message_get_body(stanza);
	if (body == NULL)
		return 1;
	printf("MSG %s %s\n", from ? from : "-", body);
	fflush(stdout);
	if (from != NULL) {
		size_t n = strlen(body) + sizeof("echo: ");
		char *text = malloc(n);
		if (text != NULL) {
			snprintf(text, n, "echo: %s", body);
			xmpp_stanza_t *reply = xmpp_message_new(
				ctx, type ? type : "chat", from, NULL);
			xmpp_message_set_body(reply, text);
			xmpp_send(conn, reply);
			xmpp_stanza_release(reply);
			free(text);
			answered++;
		}
	}
	xmpp_free(ctx, body);
	if (max_msgs > 0 && answered >= max_msgs)
		xmpp_disconnect(conn);
	return 1;
}

static void conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t status,
			 int error, xmpp_stream_error_t *stream_error,
			 void *userdata)
{
	xmpp_ctx_t *ctx = userdata;
	(void)stream_error;

	if (status == XMPP_CONN_CONNECT) {
		connected = 1;
		xmpp_handler_add(conn, message_handler, NULL, "message", NULL,
				 ctx);
		xmpp_stanza_t *pres = xmpp_presence_new(ctx);
		xmpp_send(conn, pres);
		xmpp_stanza_release(pres);
		printf("READY %s secure=%d\n", xmpp_conn_get_bound_jid(conn),
		       xmpp_conn_is_secured(conn));
		fflush(stdout);
		return;
	}
	printf("DISCONNECTED status=%d error=%d\n", (int)status, error);
	fflush(stdout);
	if (!connected || (max_msgs > 0 && answered < max_msgs))
		failed = 1;
	finished = 1;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s JID PASSWORD HOST PORT SECONDS "
			"[MAXMSGS [direct]]\n", argv[0]);
		return 2;
	}
	const char *jid = argv[1], *password = argv[2], *host = argv[3];
	unsigned short port = (unsigned short)atoi(argv[4]);
	double seconds = atof(argv[5]);
	max_msgs = argc > 6 ? atoi(argv[6]) : 0;
	int direct = argc > 7 && strcmp(argv[7], "direct") == 0;

	/* a peer that closes first must not kill us on our last write
	 * (libstrophe writes with send(), not MSG_NOSIGNAL) */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	xmpp_initialize();
	xmpp_log_t *log = getenv("STROPHE_DEBUG") ?
		xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL;
	xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, log);
	xmpp_conn_t *conn = xmpp_conn_new(ctx);
	long flags = XMPP_CONN_FLAG_MANDATORY_TLS | XMPP_CONN_FLAG_TRUST_TLS;
	if (direct)
		flags = XMPP_CONN_FLAG_LEGACY_SSL | XMPP_CONN_FLAG_TRUST_TLS;
	xmpp_conn_set_flags(conn, flags);
	xmpp_conn_set_jid(conn, jid);
	xmpp_conn_set_pass(conn, password);

	if (xmpp_connect_client(conn, host, port, conn_handler, ctx) !=
	    XMPP_EOK) {
		printf("DISCONNECTED connect failed\n");
		fflush(stdout);
		failed = 1;
		finished = 1;
	}
	double deadline = now() + seconds;
	int disconnecting = 0;
	while (!finished) {
		if (!disconnecting && (stop_requested || now() > deadline)) {
			disconnecting = 1;
			deadline = now() + 2;   /* time for </stream:stream> */
			xmpp_disconnect(conn);
		} else if (disconnecting && now() > deadline) {
			break;
		}
		xmpp_run_once(ctx, 50);
	}
	printf("EXIT answered=%d\n", answered);
	fflush(stdout);
	xmpp_conn_release(conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	return failed ? 1 : 0;
}
