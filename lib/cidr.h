/*
 * cidr.h - lists of address prefixes ("127.0.0.0/8 ::1 10.1.2.3"),
 * IPv4 and IPv6, separated by spaces, tabs or commas; an address
 * without "/len" is a single host.  Used for http.admin_addresses.
 * Failure policy: a bad entry makes cidr_list_check() fail with the
 * entry named; cidr_list_match() treats a bad entry as no match.
 */
#ifndef XMPPD_CIDR_H
#define XMPPD_CIDR_H

#include <sys/socket.h>

/* 0, or -1 with *error_r naming the first bad entry (static buffer). */
int cidr_list_check(const char *list, const char **error_r);
/* 1 when the peer (AF_INET or AF_INET6; an IPv4-mapped IPv6 address
 * counts as IPv4) is in one of the list's prefixes, else 0. */
int cidr_list_match(const char *list, const struct sockaddr_storage *peer);

#endif
