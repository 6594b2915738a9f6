/*
 * pep_compat_form.h - pure parts of the XEP-0402 compat and XEP-0398
 * code (worker/pep_compat_form.c; used by pep_compat.c and
 * fuzz/fuzz_pep_compat.c).
 * Failure policy: see pep_compat_form.c.
 */
#ifndef XMPPD_PEP_COMPAT_FORM_H
#define XMPPD_PEP_COMPAT_FORM_H

#include <stddef.h>

struct arena;
struct buf;
struct xml_node;

#define NS_BOOKMARKS2 "urn:xmpp:bookmarks:1"
#define NS_BOOKMARKS_LEGACY "storage:bookmarks"
#define NS_AVATAR_META "urn:xmpp:avatar:metadata"
#define NS_AVATAR_DATA "urn:xmpp:avatar:data"
#define NS_VCARD "vcard-temp"

/* One bookmark, as both forms carry it. */
struct pep_compat_bm {
	const char *jid;                /* the room; the item id */
	const char *name;               /* NULL: none */
	int autojoin;
	const char *nick, *password;    /* NULL: none */
	const struct xml_node *extensions; /* XEP-0402 only */
};

/* A <conference/> of either namespace (ns) into b; b->jid is left as
 * it is (XEP-0402: the item id; XEP-0048: the jid attribute). */
void pep_compat_form_bm_of(struct arena *a, const struct xml_node *conf,
			   const char *ns, struct pep_compat_bm *b);
/* Same bookmark as far as the XEP-0048 form can tell. */
int pep_compat_form_bm_eq(const struct pep_compat_bm *x,
			  const struct pep_compat_bm *y);
/* The XEP-0402 payload of b, NUL-terminated, serialized as pep.c stores
 * payloads (every element declares its namespace).  0 or -1. */
int pep_compat_form_render_0402(struct buf *out,
				const struct pep_compat_bm *b);
/* b as an XEP-0048 <conference/> (inside <storage/>). */
void pep_compat_form_render_0048(struct buf *out,
				 const struct pep_compat_bm *b);
int pep_compat_form_storage(struct arena *a, const struct xml_node *storage,
			    unsigned max, struct pep_compat_bm **bm_r,
			    unsigned *n_r, const char **why_r);
int pep_compat_form_metadata(const struct xml_node *m, char id[41],
			     const char **type_r, const char **why_r);
/* SHA-1 (lower-case hex) of the base64 text b64 (whitespace skipped).
 * 0, or -1 when it is not base64 (or empty) or memory ran out. */
int pep_compat_form_sha1(const char *b64, char hex[41]);
/* The hash of vCard v's PHOTO into hex ("" when it has none or it is
 * not readable). */
void pep_compat_form_vcard_hash(struct arena *a, const struct xml_node *v,
				char hex[41]);
/* XEP-0398 section 3.1: vCard v (a parsed stored one, changed in
 * place; NULL or not a vCard: a new one) serialized into out
 * (NUL-terminated) with its PHOTOs replaced by one of type (may be NULL)
 * and base64 data, or with none when data is NULL.  0, or -1 (memory). */
int pep_compat_form_vcard_photo(struct arena *a, struct xml_node *v,
				const char *type, const char *data,
				struct buf *out);

#endif
