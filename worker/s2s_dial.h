/*
 * s2s_dial.h - find and connect to a remote domain's server without
 * blocking the loop (RFC 6120 section 3.2, XEP-0368): c-ares asks for
 * _xmpps-server._tcp and _xmpp-server._tcp SRV records (priority, then
 * weighted random order per RFC 2782; "." means no service), falls back
 * to the domain's A/AAAA records on port 5269, and tries the addresses
 * of each target happy-eyeballs style (RFC 8305: IPv6 and IPv4
 * interleaved, a new attempt every s2s.connect_stagger while earlier
 * ones are still pending, the first to connect wins).  Failure policy:
 * one callback per dial, always, with an RFC 6120 stanza error
 * condition when nothing could be reached.
 */
#ifndef XMPPD_S2S_DIAL_H
#define XMPPD_S2S_DIAL_H

#include <stdint.h>

struct worker;
struct s2s_dial;

/* The low bits of the epoll data of a descriptor the dialer watches
 * (its objects are 8-byte aligned; HTTPCONN_EV_TAG is 1). */
#define S2S_DIAL_EV_TAG 2u

struct s2s_dial_result {
	int fd;                 /* connected, non-blocking; the callee owns it */
	int direct_tls;         /* from an _xmpps-server target: TLS first */
	char host[256];         /* the SRV target (or the domain) connected
				   to, for the log: the RFC 6125 reference
				   identity and the SNI name (XEP-0368) are
				   still the domain */
	uint16_t port;
	char peer[64];          /* "address:port" for the log */
};

/* error is NULL on success (r set), else "remote-server-not-found" (no
 * such domain, no address, every connection refused) or
 * "remote-server-timeout" (DNS or every connect timed out), with reason
 * a one-line explanation for the log. */
typedef void (*s2s_dial_cb)(void *ctx, const struct s2s_dial_result *r,
			    const char *error, const char *reason);

/* Start reaching domain; cb is called exactly once, never from inside
 * this call.  NULL without memory. */
struct s2s_dial *s2s_dial_start(struct worker *w, const char *domain,
				s2s_dial_cb cb, void *ctx);
/* Give up: no callback; sockets closed.  A dial is freed once its
 * callback returns: cancelling it from inside the callback is a no-op. */
void s2s_dial_cancel(struct s2s_dial *d);

/* The worker's loop: set up (c-ares channel with s2s.dns_servers),
 * epoll events on descriptors the dialer registered (tagged with
 * S2S_DIAL_EV_TAG in the epoll data, see worker.c), timers (ms until
 * the next one, -1 none) and teardown. */
int s2s_dial_init(struct worker *w);
void s2s_dial_event(struct worker *w, uint64_t data, uint32_t events);
int s2s_dial_next_timeout(struct worker *w, int64_t now_ms);
void s2s_dial_run_timers(struct worker *w, int64_t now_ms);
/* Worker exit: dials still running are cancelled (no callback), the
 * c-ares channel destroyed. */
void s2s_dial_shutdown(struct worker *w);

#endif
