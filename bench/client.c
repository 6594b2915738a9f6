/*
 * client.c - one simulated XMPP client: non-blocking connect, stream
 * open, STARTTLS (or direct TLS), SASL PLAIN or SCRAM, restart, bind,
 * <presence/>, then whatever child.c sends; incoming elements go to the
 * state's handler.  With --sm, XEP-0198 after bind (<enable resume/>, h
 * counted both ways, <r/> answered); a client reset by the storm keeps
 * its id and h (CS_DETACHED) and its next login ends in <resume/>
 * instead of bind.  With --csi it may say <inactive/>.  The state machine is driven by epoll events only.
 * Memory: the struct, OpenSSL's state, and buffers only while they hold
 * bytes (SSL_MODE_RELEASE_BUFFERS drops OpenSSL's own when idle).
 * Failure policy: any error ends this client and bumps one counter.
 */
#include "child.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SM "urn:xmpp:sm:3"
#define NS_CSI "urn:xmpp:csi:0"
#define CBUF_MAX (4u << 20)     /* an element larger than this is an error */
#define SEND_LIT(ch, c, s) client_send(ch, c, s, sizeof(s) - 1)

/* ---- buffers -------------------------------------------------------- */

static int cbuf_append(struct cbuf **bp, const char *p, size_t n)
{
	struct cbuf *b = *bp;
	size_t len = b ? b->len : 0, cap = b ? b->cap : 0;
	if (len + n > CBUF_MAX)
		return -1;
	if (len + n > cap) {
		size_t want = cap ? cap : 256;
		while (want < len + n)
			want *= 2;
		struct cbuf *nb = realloc(b, sizeof(*nb) + want);
		if (nb == NULL)
			return -1;
		nb->len = (uint32_t)len;
		nb->cap = (uint32_t)want;
		*bp = b = nb;
	}
	memcpy(b->data + len, p, n);
	b->len = (uint32_t)(len + n);
	return 0;
}

/* Drop n bytes from the front; an emptied buffer is freed. */
static void cbuf_consume(struct cbuf **bp, size_t n)
{
	struct cbuf *b = *bp;
	if (n >= b->len) {
		free(b);
		*bp = NULL;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= (uint32_t)n;
}

size_t client_out_len(const struct client *c)
{
	return c->out ? c->out->len : 0;
}

void client_username(const struct child *ch, uint32_t index, char *out,
		     size_t size)
{
	snprintf(out, size, ch->o->user_pattern, (int)(ch->o->first + index));
}

/* ---- closing ---------------------------------------------------------- */

void client_close(struct child *ch, struct client *c)
{
	if (c->sender_pos != NO_SENDER)
		child_client_gone(ch, c);
	if (ch->muc != NULL)
		muc_client_closed(ch, c);
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);           /* also leaves the epoll set */
		c->fd = -1;
	}
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	scram_free(&c->scram);
	free(c->smid);
	c->smid = NULL;
	c->state = CS_CLOSED;
}

/* The storm: what a phone losing its network looks like to the server,
 * without its FIN: a reset (SO_LINGER 0), no TLS close_notify, no
 * </stream:stream>.  The SM id and counters stay for <resume/>. */
void client_drop_hard(struct child *ch, struct client *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	if (c->sender_pos != NO_SENDER)
		child_client_gone(ch, c);
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->flags = 0;
	c->state = CS_DETACHED;
}

void client_fail(struct child *ch, struct client *c, enum client_fail why)
{
	if (c->state == CS_ONLINE) {
		ch->cnt.disconnected++;
	} else if (c->state == CS_CLOSING) {
		if (c->flags & CF_DROP)
			ch->cnt.dropped++;
	} else if (c->state != CS_CLOSED && c->state != CS_DETACHED) {
		uint64_t *n[] = {
			[FAIL_CONNECT] = &ch->cnt.fail_connect,
			[FAIL_TLS] = &ch->cnt.fail_tls,
			[FAIL_AUTH] = &ch->cnt.fail_auth,
			[FAIL_BIND] = &ch->cnt.fail_bind,
			[FAIL_CLOSED] = &ch->cnt.fail_closed,
			[FAIL_TIMEOUT] = &ch->cnt.fail_timeout,
			[FAIL_SM] = &ch->cnt.fail_sm,
		};
		if (c->flags & CF_RESUMING) {
			ch->cnt.resume_error++;
			ch->resume_pending--;
		} else {
			(*n[why])++;
			ch->resolved++;
		}
		ch->pending--;
	}
	client_close(ch, c);
}

/* ---- raw I/O ---------------------------------------------------------- */

static void client_interest(struct child *ch, struct client *c)
{
	bool want = c->state == CS_CONNECTING || (c->flags & CF_HS_WRITE) ||
		    c->out != NULL;
	if (want == ((c->flags & CF_POLLOUT) != 0))
		return;
	struct epoll_event ev = {
		.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c,
	};
	if (epoll_ctl(ch->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->flags ^= CF_POLLOUT;
}

/* Bytes written, 0 when the socket (or TLS) would block, -1 on error. */
static ssize_t client_write_some(struct client *c, const char *p, size_t n)
{
	if (c->flags & CF_TLS) {
		ERR_clear_error();
		int r = SSL_write(c->ssl, p, n > (1u << 30) ? 1 << 30 : (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ?
		       0 : -1;
	}
	ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
	if (r >= 0)
		return r;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ?
	       0 : -1;
}

static int client_flush(struct child *ch, struct client *c)
{
	while (c->out != NULL) {
		ssize_t r = client_write_some(c, c->out->data, c->out->len);
		if (r < 0) {
			client_fail(ch, c, FAIL_CLOSED);
			return -1;
		}
		if (r == 0)
			break;
		cbuf_consume(&c->out, (size_t)r);
	}
	client_interest(ch, c);
	return 0;
}

/* Send or queue; -1 when the client has been closed. */
int client_send(struct child *ch, struct client *c, const char *p, size_t n)
{
	if (c->out == NULL) {
		ssize_t r = client_write_some(c, p, n);
		if (r < 0) {
			client_fail(ch, c, FAIL_CLOSED);
			return -1;
		}
		p += r;
		n -= (size_t)r;
		if (n == 0)
			return 0;
	}
	if (cbuf_append(&c->out, p, n) < 0) {
		client_fail(ch, c, FAIL_CLOSED);
		return -1;
	}
	client_interest(ch, c);
	return 0;
}

static int client_sendf(struct child *ch, struct client *c, const char *fmt,
			...) __attribute__((format(printf, 3, 4)));

static int client_sendf(struct child *ch, struct client *c, const char *fmt,
			...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		client_fail(ch, c, FAIL_CLOSED);
		return -1;
	}
	return client_send(ch, c, buf, (size_t)n);
}

/* ---- connect and TLS ---------------------------------------------------- */

static int client_send_header(struct child *ch, struct client *c)
{
	size_t len;
	const char *h = client_header(ch, c, &len);
	return client_send(ch, c, h, len);
}

void client_start(struct child *ch, struct client *c, int64_t now)
{
	const struct bench_opts *o = ch->o;
	c->t_start = now;
	if (ch->cnt.t_first_connect == 0)
		ch->cnt.t_first_connect = now;
	ch->pending++;
	c->state = CS_CONNECTING;
	bool partner = bench_is_partner(o, client_index(ch, c));
	const struct sockaddr_storage *addr = partner ? &o->partner_addr :
					      &o->addr;
	socklen_t addr_len = partner ? o->partner_addr_len : o->addr_len;
	c->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		       SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		client_fail(ch, c, FAIL_CONNECT);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->sources > 0 && addr->ss_family == AF_INET) {
		/* Pick the port at connect(), per 4-tuple: without this,
		 * bind() would give each source only ~28k ports in all. */
		struct sockaddr_in src = { .sin_family = AF_INET };
		uint32_t a = 0x7f000002u + client_index(ch, c) % o->sources;
		src.sin_addr.s_addr = htonl(a);
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			   sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			client_fail(ch, c, FAIL_CONNECT);
			return;
		}
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	if ((connect(c->fd, (const struct sockaddr *)addr, addr_len) < 0 &&
	     errno != EINPROGRESS) ||
	    epoll_ctl(ch->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		client_fail(ch, c, FAIL_CONNECT);
		return;
	}
	c->flags = (uint8_t)((c->flags & CF_RESUMING) | CF_POLLOUT);
}

static int client_handshake(struct child *ch, struct client *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->flags = (uint8_t)((c->flags & ~(CF_HS_WRITE | CF_OPEN)) |
				     CF_TLS);
		c->state = CS_FEATURES_AUTH;
		if (client_send_header(ch, c) < 0)
			return -1;
		client_interest(ch, c);
		return 0;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		c->flags &= (uint8_t)~CF_HS_WRITE;
	} else if (e == SSL_ERROR_WANT_WRITE) {
		c->flags |= CF_HS_WRITE;
	} else {
		client_fail(ch, c, FAIL_TLS);
		return -1;
	}
	client_interest(ch, c);
	return 0;
}

static int client_tls_begin(struct child *ch, struct client *c)
{
	c->state = CS_TLS;
	c->ssl = SSL_new(ch->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		client_fail(ch, c, FAIL_TLS);
		return -1;
	}
	SSL_set_tlsext_host_name(c->ssl, bench_domain(ch->o,
						      client_index(ch, c)));
	SSL_set_connect_state(c->ssl);
	return client_handshake(ch, c);
}

static void client_connected(struct child *ch, struct client *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
		client_fail(ch, c, FAIL_CONNECT);
		return;
	}
	if (ch->o->direct_tls) {
		client_tls_begin(ch, c);
		return;
	}
	c->state = CS_FEATURES_TLS;
	if (client_send_header(ch, c) == 0)
		client_interest(ch, c);
}

/* ---- the login steps --------------------------------------------------- */

static int client_auth(struct child *ch, struct client *c)
{
	char user[128], raw[512], b64[800];
	int n;
	client_username(ch, client_index(ch, c), user, sizeof(user));
	if (ch->o->mech == BENCH_MECH_PLAIN) {
		n = snprintf(raw, sizeof(raw), "%c%s%c%s", 0, user, 0,
			     ch->o->password);
		c->state = CS_AUTH;
	} else {
		n = scram_start(ch->o->mech, user, &c->scram, raw, sizeof(raw));
		c->state = CS_SCRAM_FIRST;
	}
	if (n < 0 || (size_t)n >= sizeof(raw) ||
	    b64_encode(raw, (size_t)n, b64, sizeof(b64)) < 0) {
		client_fail(ch, c, FAIL_AUTH);
		return -1;
	}
	return client_sendf(ch, c, "<auth xmlns='" NS_SASL "' mechanism='%s'>"
			    "%s</auth>", scram_mech_name(ch->o->mech), b64);
}

static int client_scram_challenge(struct child *ch, struct client *c,
				  const char *el, size_t len)
{
	size_t tl;
	char raw[512], out[512], b64[800];
	const char *t = xmlscan_text(el, len, "challenge", &tl);
	int n = t ? b64_decode(t, tl, raw, sizeof(raw) - 1) : -1;
	if (n > 0) {
		raw[n] = '\0';         /* the iteration count is parsed */
		n = scram_final(c->scram, ch->o->password, raw, (size_t)n, out,
				sizeof(out));
	}
	if (n <= 0 || b64_encode(out, (size_t)n, b64, sizeof(b64)) < 0) {
		client_fail(ch, c, FAIL_AUTH);
		return -1;
	}
	c->state = CS_SCRAM_FINAL;
	return client_sendf(ch, c, "<response xmlns='" NS_SASL "'>%s</response>",
			    b64);
}

static int client_success(struct child *ch, struct client *c, const char *el,
			  size_t len)
{
	if (c->scram != NULL) {
		size_t tl;
		char raw[256];
		const char *t = xmlscan_text(el, len, "success", &tl);
		int n = t ? b64_decode(t, tl, raw, sizeof(raw)) : -1;
		if (n <= 0 || scram_verify(c->scram, raw, (size_t)n) < 0) {
			client_fail(ch, c, FAIL_AUTH);
			return -1;
		}
		scram_free(&c->scram);
	}
	c->flags &= (uint8_t)~CF_OPEN;          /* stream restart */
	c->state = CS_FEATURES_BIND;
	return client_send_header(ch, c);
}

/* <presence/> (not with --drop-at-enable), and with --csi even-numbered
 * clients say they are inactive at once. */
static int client_online(struct child *ch, struct client *c)
{
	/* --drop-at-enable resets the stream at once: a presence could be
	 * discarded with the socket's buffer, and h would be unknown */
	if (ch->o->pep_k > 0) {
		if (pep_online(ch, c) < 0)       /* --pep: its own presence */
			return -1;
	} else if (!ch->o->drop_at_enable) {
		if (SEND_LIT(ch, c, "<presence/>") < 0)
			return -1;
		client_stanza_out(c);
	}
	if (ch->o->csi && client_index(ch, c) % 2 == 0) {
		if (SEND_LIT(ch, c, "<inactive xmlns='" NS_CSI "'/>") < 0)
			return -1;
		c->flags |= CF_INACTIVE;
	}
	c->state = CS_ONLINE;
	ch->pending--;
	ch->resolved++;
	child_client_online(ch, c, bench_now_ns());
	return 0;
}

static int client_bound(struct child *ch, struct client *c, const char *el,
			const struct xs_item *it)
{
	char type[16];
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0 ||
	    strcmp(type, "result") != 0) {
		client_fail(ch, c, FAIL_BIND);
		return -1;
	}
	if (!ch->o->sm)
		return client_online(ch, c);
	c->state = CS_ENABLE;
	return SEND_LIT(ch, c, "<enable xmlns='" NS_SM "' resume='true'/>");
}

/* <enabled id resume/>: keep the id; h counts from here on both sides. */
static int client_enabled(struct child *ch, struct client *c, const char *el,
			  const struct xs_item *it)
{
	char id[512], resume[8];
	int n = xmlscan_attr(el, it->tag_len, "id", id, sizeof(id));
	if (!xmlscan_is(el, it->len, "enabled") || n <= 0 ||
	    xmlscan_attr(el, it->tag_len, "resume", resume,
			 sizeof(resume)) < 0 ||
	    (strcmp(resume, "true") != 0 && strcmp(resume, "1") != 0) ||
	    (c->smid = strdup(id)) == NULL) {
		client_fail(ch, c, FAIL_SM);
		return -1;
	}
	c->h_in = c->h_out = 0;
	ch->cnt.sm_enabled++;
	if (client_online(ch, c) < 0)
		return -1;
	if (!ch->o->drop_at_enable)
		return 0;
	child_drop_one(ch, c);
	return 1;               /* stop parsing: the buffers are gone */
}

/* <resumed h previd/> or <failed/> to our <resume/>. */
static int client_resumed(struct child *ch, struct client *c, const char *el,
			  const struct xs_item *it)
{
	char h[16];
	if (!xmlscan_is(el, it->len, "resumed")) {
		if (!xmlscan_is(el, it->len, "failed")) {
			client_fail(ch, c, FAIL_SM);
			return -1;
		}
		ch->cnt.resume_failed++;
		ch->resume_pending--;
		ch->pending--;
		c->state = CS_CLOSED;   /* counted here: close quietly */
		client_close(ch, c);
		return -1;
	}
	if (xmlscan_attr(el, it->tag_len, "h", h, sizeof(h)) <= 0 ||
	    (uint32_t)strtoul(h, NULL, 10) != c->h_out)
		ch->cnt.resume_h_mismatch++;
	c->flags &= (uint8_t)~CF_RESUMING;
	c->state = CS_ONLINE;
	ch->pending--;
	ch->resume_pending--;
	child_client_resumed(ch, c, bench_now_ns());
	return 0;
}

/* After <resumed/>: how many of the next stanzas are resent ones is not
 * on the wire; what we count is what arrived before our first <a/>. */
static int client_ack(struct child *ch, struct client *c)
{
	ch->cnt.acks_sent++;
	return client_sendf(ch, c, "<a xmlns='" NS_SM "' h='%u'/>", c->h_in);
}

/* An IQ addressed to us (the server's XEP-0199 ping): answer it. */
static int client_iq(struct child *ch, struct client *c, const char *el,
		     const struct xs_item *it)
{
	char type[16], id[128], from[256];
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0 ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0) ||
	    xmlscan_attr(el, it->tag_len, "id", id, sizeof(id)) < 0)
		return 0;
	if (xmlscan_attr(el, it->tag_len, "from", from, sizeof(from)) < 0)
		snprintf(from, sizeof(from), "%s",
			 bench_domain(ch->o, client_index(ch, c)));
	client_stanza_out(c);
	return client_sendf(ch, c, "<iq type='result' id='%s' to='%s'/>", id,
			    from);
}

/* One top-level element in state c->state; -1 closed, 1 stop parsing. */
static int client_element(struct child *ch, struct client *c, const char *el,
			  const struct xs_item *it)
{
	size_t len = it->len;
	bool failure = xmlscan_is(el, len, "failure");
	if (xmlscan_is(el, len, "stream:error")) {
		ch->cnt.stream_errors++;
		return 0;               /* the server closes next */
	}
	switch ((enum client_state)c->state) {
	case CS_FEATURES_TLS:
		if (!xmlscan_is(el, len, "stream:features"))
			return 0;
		c->state = CS_PROCEED;
		return SEND_LIT(ch, c, "<starttls xmlns='urn:ietf:params:xml:"
				"ns:xmpp-tls'/>");
	case CS_PROCEED:
		if (!xmlscan_is(el, len, "proceed"))
			break;
		return client_tls_begin(ch, c) < 0 ? -1 : 1;
	case CS_FEATURES_AUTH:
		return xmlscan_is(el, len, "stream:features") ?
		       client_auth(ch, c) : 0;
	case CS_SCRAM_FIRST:
		if (xmlscan_is(el, len, "challenge"))
			return client_scram_challenge(ch, c, el, len);
		break;
	case CS_AUTH:
	case CS_SCRAM_FINAL:
		if (xmlscan_is(el, len, "success"))
			return client_success(ch, c, el, len);
		break;
	case CS_FEATURES_BIND:
		if (!xmlscan_is(el, len, "stream:features"))
			return 0;
		if (c->flags & CF_RESUMING) {
			c->state = CS_RESUME;
			return client_sendf(ch, c, "<resume xmlns='" NS_SM "' "
					    "h='%u' previd='%s'/>", c->h_in,
					    c->smid);
		}
		c->state = CS_BIND;
		return client_sendf(ch, c, "<iq type='set' id='bind'><bind "
				    "xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
				    "<resource>%s</resource></bind></iq>",
				    BENCH_RESOURCE);
	case CS_BIND:
		return xmlscan_is(el, len, "iq") ? client_bound(ch, c, el, it) : 0;
	case CS_ENABLE:
		return client_enabled(ch, c, el, it);
	case CS_RESUME:
		return client_resumed(ch, c, el, it);
	case CS_ONLINE:
	case CS_CLOSING: {
		bool msg = xmlscan_is(el, len, "message");
		bool iq = !msg && xmlscan_is(el, len, "iq");
		if (msg || iq || xmlscan_is(el, len, "presence")) {
			c->h_in++;
			if (c->flags & CF_FLUSHED)
				ch->cnt.csi_flush_stanzas++;
			else
				ch->cnt.csi_stanzas[(c->flags & CF_INACTIVE) != 0]++;
		} else if (xmlscan_is(el, len, "r") && c->state == CS_ONLINE) {
			return client_ack(ch, c);
		}
		if (ch->muc != NULL) {  /* closing too: rx and rxto pair */
			int r = muc_element(ch, c, el, it);
			if (r <= 0)
				return r;
		}
		if (ch->o->pep_k > 0 && c->state == CS_ONLINE) {
			int r = pep_element(ch, c, el, it);
			if (r <= 0)
				return r;
		}
		if (msg)
			child_on_message(ch, c, el, it);
		else if (iq && c->state == CS_ONLINE)
			return client_iq(ch, c, el, it);
		return 0;
	}
	default:
		return 0;
	}
	if (failure) {
		client_fail(ch, c, c->state == CS_PROCEED ? FAIL_TLS : FAIL_AUTH);
		return -1;
	}
	return 0;
}

/* Parse what arrived; keep an incomplete tail.  -1: client closed. */
static int client_feed(struct child *ch, struct client *c, const char *data,
		       size_t n)
{
	const char *p = data;
	size_t len = n, off = 0;
	if (c->in != NULL) {
		if (cbuf_append(&c->in, data, n) < 0) {
			client_fail(ch, c, FAIL_CLOSED);
			return -1;
		}
		p = c->in->data;
		len = c->in->len;
	}
	for (;;) {
		struct xs_item it;
		enum xs_kind k = xmlscan_next(p + off, len - off,
					      (c->flags & CF_OPEN) != 0, &it);
		if (k == XS_MORE)
			break;
		if (k == XS_ERROR || k == XS_CLOSE) {
			client_fail(ch, c, FAIL_CLOSED);
			return -1;
		}
		const char *el = p + off + it.start;
		off += it.consumed;
		int r = 0;
		if (k == XS_OPEN)
			c->flags |= CF_OPEN;
		else
			r = client_element(ch, c, el, &it);
		if (r < 0)
			return -1;
		if (r > 0) {            /* TLS starts, or the stream was reset
					 * (--drop-at-enable): the rest is not
					 * ours */
			off = len;
			break;
		}
	}
	if (c->in != NULL)
		cbuf_consume(&c->in, off);
	else if (off < len && cbuf_append(&c->in, p + off, len - off) < 0) {
		client_fail(ch, c, FAIL_CLOSED);
		return -1;
	}
	return 0;
}

static void client_readable(struct child *ch, struct client *c)
{
	bool woke = false;
	unsigned k = (c->flags & CF_INACTIVE) != 0;
	for (;;) {
		ssize_t n;
		if (c->flags & CF_TLS) {
			ERR_clear_error();
			int r = SSL_read(c->ssl, ch->rbuf, sizeof(ch->rbuf));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ ||
				    e == SSL_ERROR_WANT_WRITE)
					return;
				n = 0;
			} else {
				n = r;
			}
		} else {
			n = recv(c->fd, ch->rbuf, sizeof(ch->rbuf), 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
		}
		if (n <= 0) {
			client_fail(ch, c, FAIL_CLOSED);
			return;
		}
		if (c->state == CS_ONLINE && (c->flags & CF_FLUSHED)) {
			ch->cnt.csi_flush_wakeups += !woke;
			woke = true;
		} else if (c->state == CS_ONLINE) {
			ch->cnt.csi_wakeups[k] += !woke;
			ch->cnt.csi_records[k]++;
			ch->cnt.csi_bytes[k] += (uint64_t)n;
			woke = true;
		}
		if (client_feed(ch, c, ch->rbuf, (size_t)n) < 0 ||
		    c->state == CS_TLS || c->state == CS_DETACHED)
			return;
	}
}

void client_event(struct child *ch, struct client *c, uint32_t events)
{
	if (c->state == CS_CONNECTING) {
		client_connected(ch, c);
		return;
	}
	if (c->state == CS_TLS) {
		client_handshake(ch, c);
		return;
	}
	if (c->out != NULL && client_flush(ch, c) < 0)
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		client_readable(ch, c);
}

/* Send </stream:stream> (after a last <a/> with stream management) and
 * read until the server closes: what it wrote before its own closing tag
 * is still delivered to us. */
void client_begin_close(struct child *ch, struct client *c, bool drop)
{
	if (c->state != CS_ONLINE)
		return;
	if (c->sender_pos != NO_SENDER)
		child_client_gone(ch, c);
	c->state = CS_CLOSING;
	if (drop)
		c->flags |= CF_DROP;
	/* XEP-0198: everything read so far is handled; without this a
	 * server treats it as undelivered (offline storage, bounces). */
	if (c->smid != NULL && client_sendf(ch, c, "<a xmlns='" NS_SM "' "
					    "h='%u'/>", c->h_in) < 0)
		return;
	SEND_LIT(ch, c, "</stream:stream>");
}
