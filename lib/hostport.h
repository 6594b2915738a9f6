/*
 * hostport.h - lists of server addresses with optional ports, as
 * s2s.dns_servers takes them: "127.0.0.1:5353 ::1 [::1]:53 192.0.2.1",
 * separated by spaces, tabs or commas; IPv6 with a port in brackets.
 * Failure policy: a bad entry fails the whole list with the entry named
 * (config_check refuses the file; nothing is half applied).
 */
#ifndef XMPPD_HOSTPORT_H
#define XMPPD_HOSTPORT_H

#include <stddef.h>

/* Most entries a list may have. */
#define HOSTPORT_MAX_ENTRIES 16

/* Check list and write it to out as c-ares's ares_set_servers_ports_csv
 * wants it ("127.0.0.1:5353,[::1]:53,::1"); an empty list gives "".
 * 0, or -1 with *error_r (static buffer) naming the first bad entry, or
 * saying the list is too long for out or HOSTPORT_MAX_ENTRIES. */
int hostport_list_csv(const char *list, char *out, size_t size,
		      const char **error_r);

#endif
