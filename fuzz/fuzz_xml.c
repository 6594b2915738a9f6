/*
 * fuzz_xml.c - the client's XML stream: bytes go through the real
 * worker/stream.c (expat, restricted XML, stream restarts, parking of
 * idle parsers, the stanza size limit) with the layers around it
 * stubbed (stubs.c).  Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan);
 *  - every stanza the stream dispatches survives xml_serialize and a
 *    re-parse unchanged (names, namespaces, attributes, text), both as
 *    written on a c2s stream (jabber:client in scope) and standalone;
 *  - what the server writes back (header, features, stream errors) is
 *    well-formed XML so far.
 * Input: the client's bytes.  Unless they start with "<?xml" or
 * "<stream", a client stream header is sent first, so the seeds can be
 * single stanzas (the .in files of tests/xml).  The length picks how the bytes are
 * cut into reads (whole, or chunks of 1..13 bytes with the parser
 * parked between chunks when it is idle), and whether the stream is
 * already authenticated (stanzas reach routing) or not (SASL, which
 * the stub answers with a stream restart, as after <success/>).
 */
#include "fuzz.h"
#include "stubs.h"
#include "xmlcheck.h"
#include "../worker/worker.h"
#include "config.h"

#include <expat.h>
#include <string.h>

static struct worker fuzz_worker;
static struct ipc_worker_stats fuzz_stats;

static const char fuzz_header[] =
	"<?xml version='1.0'?><stream:stream to='localhost' "
	"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
	"version='1.0'>";

/* Where the server's output of each stream starts (a restart makes a
 * new XML document). */
#define FUZZ_MAX_STREAMS 64
static size_t fuzz_stream_at[FUZZ_MAX_STREAMS];
static unsigned fuzz_streams;

static void fuzz_xml_dispatch(struct conn *c, struct xml_node *n, int kind)
{
	xmlcheck_round_trip(n, NS_CLIENT);
	xmlcheck_round_trip(n, "");
	/* a message for an offline account is stored like this */
	if (kind == FUZZ_DISPATCH_ROUTE)
		xmlcheck_store_round_trip(n);
	/* as the SASL layer does after <success/>: a new stream starts
	 * right after this element, in the same read */
	if (kind == FUZZ_DISPATCH_SASL && strcmp(n->name, "auth") == 0 &&
	    fuzz_streams < FUZZ_MAX_STREAMS) {
		fuzz_stream_at[fuzz_streams++] = buf_used(&c->out);
		stream_restart(c);
	}
}

static void fuzz_init(void)
{
	fuzz_quiet_log();
	fuzz_worker.cfg = config_new();
	fuzz_worker.cfg->max_stanza_size = 16384;  /* reachable by fuzzing */
	/* No TLS here: with tls.required the stream would offer no SASL
	 * (it fails closed) and the fuzzer would not reach it. */
	fuzz_worker.cfg->tls_required = 0;
	fuzz_worker.stats = &fuzz_stats;
	fuzz_dispatch = fuzz_xml_dispatch;
}

static int fuzz_feed(struct conn *c, const char *p, size_t len, size_t chunk)
{
	while (len > 0) {
		size_t n = chunk == 0 || chunk > len ? len : chunk;
		if (stream_feed(c, p, n) < 0)
			return -1;
		p += n;
		len -= n;
		if (chunk != 0)
			stream_park(c);     /* only when idle between stanzas */
	}
	return 0;
}

/* The server's output must be well-formed as far as it goes.
 * (-DFUZZ_XML_NO_OUTPUT_CHECK: look past this property, to find other
 * bugs while one of its findings is open.) */
static void fuzz_check_output(const struct conn *c)
{
#ifdef FUZZ_XML_NO_OUTPUT_CHECK
	if (c != NULL)
		return;
#endif
	for (unsigned i = 0; i < fuzz_streams; i++) {
		size_t from = fuzz_stream_at[i];
		size_t to = i + 1 < fuzz_streams ? fuzz_stream_at[i + 1]
						  : buf_used(&c->out);
		if (to == from)
			continue;       /* (and c->out may have no memory) */
		XML_Parser p = XML_ParserCreateNS("UTF-8", XML_NS_SEP);
		FUZZ_CHECK(p != NULL, "out of memory");
		const char *out = buf_head(&c->out) + from;
		enum XML_Status st = XML_Parse(p, out, (int)(to - from), 0);
		FUZZ_CHECK(st != XML_STATUS_ERROR, "server output not "
			   "well-formed (%s): %.*s",
			   XML_ErrorString(XML_GetErrorCode(p)),
			   (int)(to - from), out);
		XML_ParserFree(p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct conn c;
	char domain[] = "localhost";

	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size > 65536)
		return 0;
	memset(&c, 0, sizeof(c));
	c.w = &fuzz_worker;
	c.fd = -1;
	c.state = CONN_STATE_HEADER;
	c.domain = domain;
	buf_init(&c.out, 1 << 20);
	fuzz_stream_at[0] = 0;
	fuzz_streams = 1;
	/* a quarter of the inputs talk before authentication */
	c.authenticated = c.bound = size % 4 != 0;
	size_t chunk = size % 3 == 0 ? 0 : 1 + size % 13;
	if (stream_init(&c) < 0)
		abort();
	const char *p = (const char *)data;
	int own_header = (size >= 5 && memcmp(p, "<?xml", 5) == 0) ||
			 (size >= 7 && memcmp(p, "<stream", 7) == 0);
	if (own_header ||
	    fuzz_feed(&c, fuzz_header, sizeof(fuzz_header) - 1, chunk) == 0)
		fuzz_feed(&c, p, size, chunk);
	fuzz_check_output(&c);
	stream_free(&c);
	buf_free(&c.out);
	return 0;
}
