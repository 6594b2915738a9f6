/*
 * xml.h - stanzas as small trees in a per-stanza arena, built from expat
 * callbacks (namespaces on, separator XML_NS_SEP), and serialized with
 * correct escaping and namespace declarations for the receiving stream.
 * Failure policy: allocation failures return NULL/-1; the caller ends
 * that one stream with resource-constraint.
 */
#ifndef XMPPD_XML_H
#define XMPPD_XML_H

#include <stddef.h>
#include "arena.h"
#include "buf.h"

#define XML_NS_SEP '\xff'   /* expat namespace separator: never in a name */

struct xml_attr {
	struct xml_attr *next;
	const char *ns;         /* namespace URI, "" for none */
	const char *name;       /* local name */
	const char *value;
};

struct xml_node {
	struct xml_node *parent;
	struct xml_node *next;          /* next sibling */
	struct xml_node *children;      /* first child */
	struct xml_node *last_child;
	/* element: name != NULL; text node: name == NULL */
	const char *ns;                 /* namespace URI ("" none) */
	const char *name;               /* local name */
	struct xml_attr *attrs;
	const char *text;               /* text node: the characters */
	size_t text_len;
};

/* What a stanza may grow to once written out: xml_serialize() of a tree
 * the builder accepted under xml_builder_bound(b, xml_out_bound(max))
 * needs at most xml_out_bound(max) bytes, plus XML_OUT_SLACK for what the
 * server adds before writing it (from, to, <delay/>).  Serialization
 * buffers are capped at xml_out_cap(max).  XML_OUT_FACTOR is documented
 * with c2s.max_stanza_size. */
#define XML_OUT_FACTOR 2
#define XML_OUT_SLACK ((size_t)64 << 10)
#define xml_out_bound(max) ((size_t)(max) * XML_OUT_FACTOR)
#define xml_out_cap(max) (xml_out_bound(max) + XML_OUT_SLACK)

/* One namespace URI of the stanza being built, stored once. */
struct xml_ns_entry {
	const char *uri;
	size_t len;
	size_t esc_len;                 /* once escaped as an attribute */
	size_t hash;
};

struct xml_builder {
	struct arena *arena;
	struct xml_node *root;
	struct xml_node *cur;           /* open element */
	int failed;                     /* out of memory (or too_big) seen */
	int too_big;                    /* out_est passed out_max */
	struct xml_node *text;          /* cur's trailing text node, growing */
	size_t text_cap;                /* bytes allocated for text->text */
	size_t out_max;                 /* bound on out_est; 0: none */
	size_t out_est;                 /* xml_serialize() writes at most
					 * this plus out_slack bytes */
	size_t out_slack;               /* what escaping text and values
					 * may add (0 once measured) */
	struct xml_ns_entry *ns_tab;    /* distinct URIs (open addressing) */
	size_t ns_cap, ns_count;
};

void xml_builder_init(struct xml_builder *b, struct arena *arena);
/* Refuse (->failed and ->too_big set) a tree whose serialized form could
 * pass out_max bytes, whatever the default namespace it is written in. */
void xml_builder_bound(struct xml_builder *b, size_t out_max);
/* From expat: name is "ns<SEP>local" or "local"; atts as expat gives. */
void xml_builder_start(struct xml_builder *b, const char *name,
		       const char **atts);
void xml_builder_end(struct xml_builder *b);
void xml_builder_text(struct xml_builder *b, const char *s, int len);
/* The finished root element (after its end), or NULL. */
struct xml_node *xml_builder_done(struct xml_builder *b);
/* Measure the escaping of the finished tree exactly (slack to 0): the
 * bytes xml_serialize() writes at most. */
size_t xml_builder_exact(struct xml_builder *b);

/* Where two trees differ (names, namespaces, attributes as a set, text,
 * shape), or NULL when they are the same: the parse -> serialize ->
 * re-parse property of the tests and fuzzers. */
const char *xml_tree_diff(const struct xml_node *a, const struct xml_node *b);

/* Construction */
struct xml_node *xml_new(struct arena *a, const char *ns, const char *name);
struct xml_node *xml_add_child(struct arena *a, struct xml_node *parent,
			       const char *ns, const char *name);
int xml_add_text(struct arena *a, struct xml_node *parent, const char *s,
		 size_t len);
/* Set (replace) or, with value NULL, remove an unqualified attribute. */
int xml_set_attr(struct arena *a, struct xml_node *n, const char *name,
		 const char *value);
void xml_append_node(struct xml_node *parent, struct xml_node *child);
/* Take child n off parent's list; prev is the child before it (NULL:
 * n is the first).  n's own next is left as it was, so a caller walking
 * the list may go on from it. */
static inline void xml_unlink_child(struct xml_node *parent,
				    struct xml_node *prev, struct xml_node *n)
{
	if (prev != NULL)
		prev->next = n->next;
	else
		parent->children = n->next;
	if (parent->last_child == n)
		parent->last_child = prev;
}

/* Access */
const char *xml_attr(const struct xml_node *n, const char *name);
const char *xml_attr_ns(const struct xml_node *n, const char *ns,
			const char *name);
struct xml_node *xml_child(const struct xml_node *n, const char *ns,
			   const char *name);   /* ns/name NULL: any */
struct xml_node *xml_first_element(const struct xml_node *n);
struct xml_node *xml_next_element(const struct xml_node *n);
unsigned xml_element_count(const struct xml_node *n);
/* Concatenated character data of n's direct text children (arena copy). */
char *xml_text(struct arena *a, const struct xml_node *n);
int xml_is(const struct xml_node *n, const char *ns, const char *name);

/* Serialize n (and its subtree).  default_ns is the default namespace in
 * scope where n is written ("jabber:client" for a stanza on a c2s
 * stream): an element in that namespace gets no xmlns attribute; others
 * declare theirs (children inherit).  Attributes in a namespace use a
 * generated prefix nsK declared on their own element; the XML namespace
 * "http://www.w3.org/XML/1998/namespace" is always the undeclared prefix
 * "xml", for attributes (xml:lang) and elements (xml:x) alike.  The
 * output is well-formed and namespace-well-formed for every tree expat
 * can build (Namespaces in XML 1.0 section 3): xml_parse_in() of it with
 * the same default_ns gives the same tree back.  0, or -1 when the buffer
 * cap is reached or the tree has an element in the xmlns namespace
 * (which no document can carry); on -1 out is as it was. */
int xml_serialize(struct buf *out, const struct xml_node *n,
		  const char *default_ns);
/* Escape for text (&, <, >) or, with attr set, also quotes.  CR (and in
 * attributes TAB, LF) become character references so they survive a
 * re-parse; bytes >= 0x80 pass unchanged; other C0 controls, which XML
 * cannot carry at all, become U+FFFD.  0 or -1; on -1 out is unchanged. */
int xml_escape(struct buf *out, const char *s, size_t len, int attr);

/* Parse one complete element from text (tests, tools).  NULL on error. */
struct xml_node *xml_parse(struct arena *a, const char *text, size_t len,
			   const char **error_r);
/* The same for text xml_serialize() wrote with default_ns: an unqualified
 * element outside any xmlns='...' declaration of the text is in
 * default_ns (an explicit xmlns='' keeps it in no namespace). */
struct xml_node *xml_parse_in(struct arena *a, const char *text, size_t len,
			      const char *default_ns, const char **error_r);

#endif
