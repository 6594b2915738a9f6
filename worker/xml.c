/*
 * xml.c - stanza trees (xml.h): built from expat callbacks into the
 * stanza arena, read through small accessors, and serialized without
 * recursion (parent links), declaring namespaces only where they change.
 * Every node, attribute and string lives in the caller's arena; only the
 * output buffer's growth and expat inside xml_parse() call malloc.
 * Output is namespace-well-formed for every tree expat builds: the XML
 * namespace is only ever the undeclared prefix xml: (elements and
 * attributes), and nothing is bound to it or to the xmlns namespace.
 * Failure policy: out of memory returns NULL/-1 (the builder sets
 * ->failed and ignores the rest of the stanza); a full output buffer, or
 * an element in the xmlns namespace (hand-built: expat refuses one),
 * returns -1 with the buffer as it was.  Nothing is logged here.
 */
#include "xml.h"

#include <expat.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define XML_NS_XML "http://www.w3.org/XML/1998/namespace"
#define XML_NS_XMLNS "http://www.w3.org/2000/xmlns/"
#define XML_PREFIX_SLOTS 16     /* generated prefixes reused per element */

/* Namespaces shared, not copied, when a stanza uses them. */
static const char *const xml_well_known[] = {
	"jabber:client", "jabber:server", XML_NS_XML,
};

/* ---- building ------------------------------------------------------- */

static const char *xml_entity(unsigned char c, int attr);

/* Most namespaces compared differ in their first byte (jabber:client,
 * urn:..., http://...): no strcmp call for those. */
static inline int xml_ns_eq(const char *a, const char *b)
{
	return a == b || (a[0] == b[0] && strcmp(a, b) == 0);
}

/* Bytes xml_escape() adds for each byte (text, attribute): from
 * xml_entity(), filled on first use. */
static unsigned char xml_extra[2][256];
static int xml_extra_ready;

/* The most xml_escape() adds for one byte (text, attribute). */
static size_t xml_extra_max[2];

static void xml_extra_init(void)
{
	if (xml_extra_ready)
		return;
	for (unsigned c = 0; c <= '>'; c++) {
		for (int a = 0; a < 2; a++) {
			const char *ent = xml_entity((unsigned char)c, a);
			xml_extra[a][c] = ent != NULL ?
				(unsigned char)(strlen(ent) - 1) : 0;
			if (xml_extra[a][c] > xml_extra_max[a])
				xml_extra_max[a] = xml_extra[a][c];
		}
	}
	xml_extra_ready = 1;
}

/* Bytes xml_escape(s, len, attr) writes. */
static size_t xml_escaped_len(const char *s, size_t len, int attr)
{
	const unsigned char *d = (const unsigned char *)s;
	const unsigned char *extra = xml_extra[attr != 0];
	size_t n = len;

	xml_extra_init();
	for (size_t i = 0; i < len; i++)
		n += extra[d[i]];
	return n;
}

static size_t xml_digits(size_t k)
{
	size_t d = 1;

	while (k >= 10) {
		k /= 10;
		d++;
	}
	return d;
}

/* A well-known URI (shared, never copied), or NULL. */
static const char *xml_well_known_ns(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(xml_well_known) / sizeof(char *); i++) {
		const char *k = xml_well_known[i];
		if (strncmp(k, s, n) == 0 && k[n] == '\0')
			return k;
	}
	return NULL;
}

static const char *xml_intern_ns(struct arena *a, const char *s, size_t n,
				 const char *like)
{
	const char *k;

	if (n == 0)
		return "";
	if (like != NULL && strncmp(like, s, n) == 0 && like[n] == '\0')
		return like;
	if ((k = xml_well_known_ns(s, n)) != NULL)
		return k;
	return arena_strndup(a, s, n);
}

/* Word at a time: the URI is hashed once per element that names it
 * (expat has just copied it, too). */
static size_t xml_ns_hash(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15u ^ n, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, s + i, n - i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	return (size_t)(h ^ (h >> 32));
}

static int xml_ns_grow(struct xml_builder *b)
{
	size_t cap = b->ns_cap != 0 ? b->ns_cap * 2 : 16;
	struct xml_ns_entry *t = arena_zalloc(b->arena, cap * sizeof(*t));

	if (t == NULL)
		return -1;
	for (size_t i = 0; i < b->ns_cap; i++) {
		const struct xml_ns_entry *e = &b->ns_tab[i];
		if (e->uri == NULL)
			continue;
		size_t j = e->hash & (cap - 1);
		while (t[j].uri != NULL)
			j = (j + 1) & (cap - 1);
		t[j] = *e;
	}
	b->ns_tab = t;          /* the old table stays in the arena */
	b->ns_cap = cap;
	return 0;
}

/* The stanza's one copy of the URI s (n bytes, not terminated), with its
 * escaped length: each distinct URI is stored once per stanza, however
 * many elements and attributes name it. */
/* The well-known namespaces as table entries (no escaping in them). */
static const struct xml_ns_entry xml_well_known_entries[] = {
	{ "jabber:client", 13, 13, 0 },
	{ "jabber:server", 13, 13, 0 },
	{ XML_NS_XML, sizeof(XML_NS_XML) - 1, sizeof(XML_NS_XML) - 1, 0 },
};

static const struct xml_ns_entry *xml_ns_lookup(struct xml_builder *b,
						const char *s, size_t n)
{
	/* A stanza's own namespace needs no table: most stanzas never
	 * build one. */
	for (size_t k = 0; k < sizeof(xml_well_known_entries) /
			       sizeof(*xml_well_known_entries); k++) {
		const struct xml_ns_entry *w = &xml_well_known_entries[k];
		if (w->len == n && memcmp(w->uri, s, n) == 0)
			return w;
	}
	size_t h = xml_ns_hash(s, n), i;

	if (b->ns_count * 4 >= b->ns_cap * 3 && xml_ns_grow(b) < 0)
		return NULL;
	for (i = h & (b->ns_cap - 1); b->ns_tab[i].uri != NULL;
	     i = (i + 1) & (b->ns_cap - 1)) {
		const struct xml_ns_entry *e = &b->ns_tab[i];
		if (e->hash == h && e->len == n && memcmp(e->uri, s, n) == 0)
			return e;
	}
	const char *uri = arena_strndup(b->arena, s, n);
	if (uri == NULL)
		return NULL;
	struct xml_ns_entry *e = &b->ns_tab[i];
	e->uri = uri;
	e->len = n;
	e->esc_len = xml_escaped_len(s, n, 1);
	e->hash = h;
	b->ns_count++;
	return e;
}

/* Split expat's "uri<SEP>local" or "local"; a URI equal to like (the
 * parent's) is shared, any other comes from the stanza's table.  The
 * escaped length of a URI that is not like's goes to *esc_r (0 when it
 * is like's), the local name's length to *name_len_r. */
static int xml_split(struct xml_builder *b, const char *qname,
		     const char *like, const char **ns_r, size_t *esc_r,
		     const char **name_r, size_t *name_len_r)
{
	const char *sep = strchr(qname, XML_NS_SEP);
	const char *local = sep != NULL ? sep + 1 : qname;
	size_t n = sep != NULL ? (size_t)(sep - qname) : 0;

	*esc_r = 0;
	if (n == 0) {
		*ns_r = "";
	} else if (like != NULL && strncmp(like, qname, n) == 0 &&
		   like[n] == '\0') {
		*ns_r = like;
	} else {
		const struct xml_ns_entry *e = xml_ns_lookup(b, qname, n);
		if (e == NULL)
			return -1;
		*ns_r = e->uri;
		*esc_r = e->esc_len;
	}
	*name_len_r = strlen(local);
	*name_r = arena_strndup(b->arena, local, *name_len_r);
	return *name_r != NULL ? 0 : -1;
}

/* Count bytes the serializer may write; refuse past the bound. */
static void xml_builder_count(struct xml_builder *b, size_t n)
{
	b->out_est += n;
	if (b->out_max != 0 && b->out_est > b->out_max) {
		b->too_big = 1;
		b->failed = 1;
	}
}

static int xml_builder_attrs(struct xml_builder *b, struct xml_node *n,
			     const char **atts)
{
	struct xml_attr **tail = &n->attrs;
	size_t prefixed = 0;

	for (; atts != NULL && atts[0] != NULL; atts += 2) {
		struct xml_attr *at = arena_alloc(b->arena, sizeof(*at));
		size_t esc, name_len, vlen = strlen(atts[1]), out;
		if (at == NULL || xml_split(b, atts[0], n->ns, &at->ns, &esc,
					    &at->name, &name_len) < 0 ||
		    (at->value = arena_strndup(b->arena, atts[1], vlen)) ==
		    NULL)
			return -1;
		at->next = NULL;
		*tail = at;
		tail = &at->next;
		/* " name='value'", " xml:name=...", or " nsK:name=..." with
		 * " xmlns:nsK='uri'" (at most one per attribute). */
		/* The value's escaping is slack, resolved only when the
		 * bound is near (xml_builder_done). */
		out = name_len + 4 + vlen;
		b->out_slack += vlen * xml_extra_max[1];
		if (at->ns[0] == '\0')
			;
		else if (xml_ns_eq(at->ns, XML_NS_XML))
			out += 4;
		else if (xml_ns_eq(at->ns, XML_NS_XMLNS))
			out = 0;
		else {
			size_t d = xml_digits(++prefixed);
			if (esc == 0)   /* the element's own URI */
				esc = xml_escaped_len(at->ns, strlen(at->ns),
						      1);
			out += 3 + d + 12 + d + esc;
		}
		xml_builder_count(b, out);
	}
	return 0;
}

void xml_builder_init(struct xml_builder *b, struct arena *arena)
{
	memset(b, 0, sizeof(*b));
	b->arena = arena;
	xml_extra_init();
}

void xml_builder_bound(struct xml_builder *b, size_t out_max)
{
	b->out_max = out_max;
}

/* p gets its first child: "<p/>" becomes "<p>...</p>". */
static void xml_builder_opened(struct xml_builder *b, struct xml_node *p)
{
	if (p->children == NULL)
		xml_builder_count(b, strlen(p->name) + 2 +
				  (xml_ns_eq(p->ns, XML_NS_XML) ? 4 : 0));
}

void xml_builder_start(struct xml_builder *b, const char *name,
		       const char **atts)
{
	struct xml_node *p = b->cur;
	size_t esc, name_len;

	if (b->failed)
		return;
	if (b->root != NULL && p == NULL) {     /* a second root */
		b->failed = 1;
		return;
	}
	struct xml_node *n = arena_zalloc(b->arena, sizeof(*n));
	if (n == NULL || xml_split(b, name, p ? p->ns : NULL, &n->ns, &esc,
				   &n->name, &name_len) < 0) {
		b->failed = 1;
		return;
	}
	/* "<name/>" or "<xml:name/>", and " xmlns='uri'" where the default
	 * namespace changes: always on the root (its context's default is
	 * not known here), on a child where it differs from the parent's
	 * scope (xml_child_scope()); an xml: parent writes xmlns='' once. */
	int xml = xml_ns_eq(n->ns, XML_NS_XML);
	size_t out = name_len + 3 + (xml ? 4 : 0);
	if (p != NULL) {
		xml_builder_opened(b, p);
		if (xml_ns_eq(p->ns, XML_NS_XML) && xml_first_element(p) == NULL)
			out += 9;
	}
	if (!xml && (p == NULL || !xml_ns_eq(n->ns, xml_ns_eq(p->ns, XML_NS_XML)
						      ? "" : p->ns)))
		out += 9 + (esc != 0 || n->ns[0] == '\0' ? esc
			    : xml_escaped_len(n->ns, strlen(n->ns), 1));
	xml_builder_count(b, out);
	if (b->failed || xml_builder_attrs(b, n, atts) < 0) {
		b->failed = 1;
		return;
	}
	if (p != NULL)
		xml_append_node(p, n);
	else
		b->root = n;
	b->cur = n;
}

void xml_builder_end(struct xml_builder *b)
{
	if (!b->failed && b->cur != NULL)
		b->cur = b->cur->parent;
}

/* Append to the text node the builder is growing; capacity doubles, so
 * expat's many small chunks cost linear time. */
static int xml_builder_grow(struct xml_builder *b, const char *s, size_t len)
{
	struct xml_node *t = b->text;
	size_t need = t->text_len + len + 1;

	if (need > b->text_cap) {
		size_t cap = b->text_cap * 2 > need ? b->text_cap * 2 : need;
		char *p = arena_alloc(b->arena, cap);
		if (p == NULL)
			return -1;
		memcpy(p, t->text, t->text_len);
		t->text = p;
		b->text_cap = cap;
	}
	char *dst = (char *)t->text;    /* ours: allocated just above */
	memcpy(dst + t->text_len, s, len);
	t->text_len += len;
	dst[t->text_len] = '\0';
	return 0;
}

void xml_builder_text(struct xml_builder *b, const char *s, int len)
{
	if (b->failed || b->cur == NULL || len <= 0)
		return;
	b->out_slack += (size_t)len * xml_extra_max[0];
	xml_builder_count(b, (size_t)len);
	if (b->failed)
		return;
	if (b->text != NULL && b->cur->last_child == b->text) {
		if (xml_builder_grow(b, s, (size_t)len) < 0)
			b->failed = 1;
		return;
	}
	xml_builder_opened(b, b->cur);
	if (b->failed || xml_add_text(b->arena, b->cur, s, (size_t)len) < 0) {
		b->failed = 1;
		return;
	}
	b->text = b->cur->last_child;
	b->text_cap = (size_t)len + 1;
}

/* What escaping adds to the text and attribute values under n. */
static size_t xml_escaping_added(const struct xml_node *n)
{
	size_t add = 0;

	for (; n != NULL; n = n->next) {
		if (n->name == NULL) {
			add += xml_escaped_len(n->text, n->text_len, 0) -
			       n->text_len;
			continue;
		}
		for (const struct xml_attr *at = n->attrs; at; at = at->next) {
			size_t len = strlen(at->value);
			add += xml_escaped_len(at->value, len, 1) - len;
		}
		add += xml_escaping_added(n->children);
	}
	return add;
}

size_t xml_builder_exact(struct xml_builder *b)
{
	if (b->out_slack != 0 && b->root != NULL) {
		b->out_est += xml_escaping_added(b->root);
		b->out_slack = 0;
	}
	return b->out_est;
}

struct xml_node *xml_builder_done(struct xml_builder *b)
{
	if (b->failed || b->cur != NULL)
		return NULL;
	/* Most stanzas are far from the bound even if every byte were
	 * escaped; the others are measured exactly, once. */
	if (b->out_max != 0 && b->out_est + b->out_slack > b->out_max &&
	    xml_builder_exact(b) > b->out_max) {
		b->too_big = 1;
		b->failed = 1;
		return NULL;
	}
	return b->root;
}

/* ---- comparison ---------------------------------------------------- */

static int xml_attr_in(const struct xml_attr *at, const struct xml_node *n)
{
	for (const struct xml_attr *b = n->attrs; b != NULL; b = b->next)
		if (strcmp(at->ns, b->ns) == 0 &&
		    strcmp(at->name, b->name) == 0)
			return strcmp(at->value, b->value) == 0;
	return 0;
}

static unsigned xml_attr_count(const struct xml_node *n)
{
	unsigned k = 0;

	for (const struct xml_attr *at = n->attrs; at != NULL; at = at->next)
		k++;
	return k;
}

/* Same namespaces, names, attributes (as a set) and text, node by node;
 * walked without recursion (trees may be deep).  NULL, or what differs. */
const char *xml_tree_diff(const struct xml_node *a, const struct xml_node *b)
{
	const struct xml_node *ra = a;

	for (;;) {
		if ((a->name == NULL) != (b->name == NULL))
			return "element vs text";
		if (a->name == NULL) {
			if (a->text_len != b->text_len ||
			    memcmp(a->text, b->text, a->text_len) != 0)
				return "text";
		} else {
			if (strcmp(a->ns, b->ns) != 0)
				return "namespace";
			if (strcmp(a->name, b->name) != 0)
				return "name";
			if (xml_attr_count(a) != xml_attr_count(b))
				return "attribute count";
			for (const struct xml_attr *at = a->attrs; at != NULL;
			     at = at->next)
				if (!xml_attr_in(at, b))
					return "attribute";
			if ((a->children == NULL) != (b->children == NULL))
				return "children";
			if (a->children != NULL) {
				a = a->children;
				b = b->children;
				continue;
			}
		}
		while (a != ra && a->next == NULL) {
			if (b->next != NULL)
				return "more children";
			a = a->parent;
			b = b->parent;
		}
		if (a == ra)
			return NULL;
		if (b->next == NULL)
			return "fewer children";
		a = a->next;
		b = b->next;
	}
}

/* ---- construction --------------------------------------------------- */

struct xml_node *xml_new(struct arena *a, const char *ns, const char *name)
{
	struct xml_node *n = arena_zalloc(a, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->ns = ns != NULL ? xml_intern_ns(a, ns, strlen(ns), NULL) : "";
	n->name = arena_strdup(a, name);
	return n->ns != NULL && n->name != NULL ? n : NULL;
}

struct xml_node *xml_add_child(struct arena *a, struct xml_node *parent,
			       const char *ns, const char *name)
{
	struct xml_node *n = xml_new(a, ns, name);

	if (n != NULL)
		xml_append_node(parent, n);
	return n;
}

int xml_add_text(struct arena *a, struct xml_node *parent, const char *s,
		 size_t len)
{
	if (len == 0)
		return 0;
	struct xml_node *t = arena_zalloc(a, sizeof(*t));
	if (t == NULL || (t->text = arena_strndup(a, s, len)) == NULL)
		return -1;
	t->text_len = len;
	xml_append_node(parent, t);
	return 0;
}

int xml_set_attr(struct arena *a, struct xml_node *n, const char *name,
		 const char *value)
{
	struct xml_attr **pp = &n->attrs;

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->ns[0] == '\0' && strcmp((*pp)->name, name) == 0)
			break;
	if (value == NULL) {
		if (*pp != NULL)
			*pp = (*pp)->next;
		return 0;
	}
	const char *v = arena_strdup(a, value);
	if (v == NULL)
		return -1;
	if (*pp == NULL) {      /* new: last, keeping the parsed order */
		struct xml_attr *at = arena_alloc(a, sizeof(*at));
		if (at == NULL || (at->name = arena_strdup(a, name)) == NULL)
			return -1;
		at->ns = "";
		at->next = NULL;
		*pp = at;
	}
	(*pp)->value = v;
	return 0;
}

void xml_append_node(struct xml_node *parent, struct xml_node *child)
{
	child->parent = parent;
	child->next = NULL;
	if (parent->last_child != NULL)
		parent->last_child->next = child;
	else
		parent->children = child;
	parent->last_child = child;
}

/* ---- access --------------------------------------------------------- */

const char *xml_attr_ns(const struct xml_node *n, const char *ns,
			const char *name)
{
	if (ns == NULL)
		ns = "";
	for (const struct xml_attr *at = n->attrs; at != NULL; at = at->next)
		if (strcmp(at->name, name) == 0 && xml_ns_eq(at->ns, ns))
			return at->value;
	return NULL;
}

const char *xml_attr(const struct xml_node *n, const char *name)
{
	return xml_attr_ns(n, "", name);
}

int xml_is(const struct xml_node *n, const char *ns, const char *name)
{
	return n != NULL && n->name != NULL &&
	       (name == NULL || strcmp(n->name, name) == 0) &&
	       (ns == NULL || xml_ns_eq(n->ns, ns));
}

struct xml_node *xml_child(const struct xml_node *n, const char *ns,
			   const char *name)
{
	for (struct xml_node *c = n->children; c != NULL; c = c->next)
		if (xml_is(c, ns, name))
			return c;
	return NULL;
}

static struct xml_node *xml_skip_text(struct xml_node *n)
{
	while (n != NULL && n->name == NULL)
		n = n->next;
	return n;
}

struct xml_node *xml_first_element(const struct xml_node *n)
{
	return xml_skip_text(n->children);
}

struct xml_node *xml_next_element(const struct xml_node *n)
{
	return xml_skip_text(n->next);
}

unsigned xml_element_count(const struct xml_node *n)
{
	unsigned count = 0;

	for (const struct xml_node *c = n->children; c != NULL; c = c->next)
		if (c->name != NULL)
			count++;
	return count;
}

char *xml_text(struct arena *a, const struct xml_node *n)
{
	const struct xml_node *c;
	size_t len = 0;

	for (c = n->children; c != NULL; c = c->next)
		if (c->name == NULL)
			len += c->text_len;
	char *p = arena_alloc(a, len + 1);
	if (p == NULL)
		return NULL;
	len = 0;
	for (c = n->children; c != NULL; c = c->next) {
		if (c->name == NULL) {
			memcpy(p + len, c->text, c->text_len);
			len += c->text_len;
		}
	}
	p[len] = '\0';
	return p;
}

/* ---- serializing ---------------------------------------------------- */

static int xml_put(struct buf *out, const char *s, size_t n)
{
	return buf_append(out, s, n);
}

static int xml_puts(struct buf *out, const char *s)
{
	return buf_append(out, s, strlen(s));
}

/* Undo a partial write: buf_append may compact, but keeps used bytes. */
static void xml_restore(struct buf *out, size_t used)
{
	out->len = out->off + used;
}

static const char *xml_entity(unsigned char c, int attr)
{
	switch (c) {
	case '&': return "&amp;";
	case '<': return "&lt;";
	case '>': return "&gt;";
	case '\r': return "&#13;";      /* survives end-of-line handling */
	case '\'': return attr ? "&apos;" : NULL;
	case '"': return attr ? "&quot;" : NULL;
	case '\t': return attr ? "&#9;" : NULL;   /* survive attribute */
	case '\n': return attr ? "&#10;" : NULL;  /* value normalization */
	default: return c < 0x20 ? "\xef\xbf\xbd" : NULL;
	}
}

int xml_escape(struct buf *out, const char *s, size_t len, int attr)
{
	size_t used = buf_used(out), run = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *ent;
		if (c > '>' || (ent = xml_entity(c, attr)) == NULL)
			continue;       /* the common case: one compare */
		if (xml_put(out, s + run, i - run) < 0 ||
		    xml_puts(out, ent) < 0)
			goto fail;
		run = i + 1;
	}
	if (xml_put(out, s + run, len - run) == 0)
		return 0;
fail:
	xml_restore(out, used);
	return -1;
}

/* Prefixes for namespaced attributes of one start tag: xml: is fixed,
 * others get ns1, ns2... declared on this element. */
struct xml_prefixes {
	const char *ns[XML_PREFIX_SLOTS];
	unsigned used;          /* slots filled */
	unsigned next;          /* last number handed out */
};

static int xml_write_ns_decl(struct buf *out, unsigned k, const char *ns)
{
	char decl[32];
	int rc;

	if (k == 0) {
		rc = xml_put(out, " xmlns='", 8);
	} else {
		int n = snprintf(decl, sizeof(decl), " xmlns:ns%u='", k);
		rc = xml_put(out, decl, (size_t)n);
	}
	if (rc < 0 || xml_escape(out, ns, strlen(ns), 1) < 0)
		return -1;
	return xml_put(out, "'", 1);
}

/* Writes " nsK:" (declaring nsK first if new on this element). */
static int xml_write_prefix(struct buf *out, struct xml_prefixes *px,
			    const char *ns)
{
	char pfx[24];
	unsigned k = 0;

	for (unsigned i = 0; i < px->used && k == 0; i++)
		if (xml_ns_eq(px->ns[i], ns))
			k = i + 1;
	if (k == 0) {   /* past the slots: a fresh prefix, still valid */
		k = ++px->next;
		if (px->used < XML_PREFIX_SLOTS)
			px->ns[px->used++] = ns;
		if (xml_write_ns_decl(out, k, ns) < 0)
			return -1;
	}
	int n = snprintf(pfx, sizeof(pfx), " ns%u:", k);
	return xml_put(out, pfx, (size_t)n);
}

static int xml_write_attr(struct buf *out, struct xml_prefixes *px,
			  const struct xml_attr *at)
{
	int rc;

	if (at->ns[0] == '\0') {
		if (strcmp(at->name, "xmlns") == 0)
			return 0;       /* we write declarations ourselves */
		rc = xml_put(out, " ", 1);
	} else if (xml_ns_eq(at->ns, XML_NS_XML)) {
		rc = xml_put(out, " xml:", 5);
	} else if (xml_ns_eq(at->ns, XML_NS_XMLNS)) {
		return 0;               /* a declaration, not data */
	} else {
		rc = xml_write_prefix(out, px, at->ns);
	}
	if (rc < 0 || xml_puts(out, at->name) < 0 ||
	    xml_put(out, "='", 2) < 0 ||
	    xml_escape(out, at->value, strlen(at->value), 1) < 0)
		return -1;
	return xml_put(out, "'", 1);
}

static int xml_has_element_child(const struct xml_node *e)
{
	return xml_first_element(e) != NULL;
}

/* The default namespace in scope for e's children once e's start tag is
 * written: e's own namespace, except for an element in the XML namespace,
 * which is written as xml:NAME (the xml prefix is never declared, and
 * the XML namespace can never be a default one).  Such an element
 * undeclares the default (xmlns='') when it has element children, so its
 * children's scope is "" without looking further up the tree. */
static const char *xml_child_scope(const struct xml_node *e)
{
	return xml_ns_eq(e->ns, XML_NS_XML) ? "" : e->ns;
}

/* Start tag of e; scope is the default namespace around it.  -1 for an
 * element in the xmlns namespace, which no document can carry. */
static int xml_write_open(struct buf *out, const struct xml_node *e,
			  const char *scope)
{
	struct xml_prefixes px = { .used = 0, .next = 0 };

	if (xml_ns_eq(e->ns, XML_NS_XMLNS))
		return -1;
	if (xml_ns_eq(e->ns, XML_NS_XML)) {
		if (xml_put(out, "<xml:", 5) < 0 ||
		    xml_puts(out, e->name) < 0)
			return -1;
		if (scope[0] != '\0' && xml_has_element_child(e) &&
		    xml_put(out, " xmlns=''", 9) < 0)
			return -1;
	} else if (xml_put(out, "<", 1) < 0 || xml_puts(out, e->name) < 0 ||
		   (!xml_ns_eq(e->ns, scope) &&
		    xml_write_ns_decl(out, 0, e->ns) < 0)) {
		return -1;
	}
	for (const struct xml_attr *at = e->attrs; at != NULL; at = at->next)
		if (xml_write_attr(out, &px, at) < 0)
			return -1;
	return e->children != NULL ? xml_put(out, ">", 1)
				   : xml_put(out, "/>", 2);
}

static int xml_write_close(struct buf *out, const struct xml_node *e)
{
	if (xml_put(out, "</", 2) < 0 ||
	    (xml_ns_eq(e->ns, XML_NS_XML) && xml_put(out, "xml:", 4) < 0) ||
	    xml_puts(out, e->name) < 0)
		return -1;
	return xml_put(out, ">", 1);
}

static int xml_write_enter(struct buf *out, const struct xml_node *n,
			   const struct xml_node *top, const char *default_ns)
{
	if (n->name == NULL)
		return xml_escape(out, n->text, n->text_len, 0);
	/* Every element we write leaves its children's default namespace
	 * as xml_child_scope() says, so that is the scope of n. */
	return xml_write_open(out, n, n == top ? default_ns
					       : xml_child_scope(n->parent));
}

int xml_serialize(struct buf *out, const struct xml_node *n,
		  const char *default_ns)
{
	const struct xml_node *cur = n;
	size_t used = buf_used(out);

	if (default_ns == NULL)
		default_ns = "";
	for (;;) {
		if (xml_write_enter(out, cur, n, default_ns) < 0)
			goto fail;
		if (cur->name != NULL && cur->children != NULL) {
			cur = cur->children;
			continue;
		}
		while (cur != n && cur->next == NULL) {
			cur = cur->parent;
			if (xml_write_close(out, cur) < 0)
				goto fail;
		}
		if (cur == n)
			return 0;
		cur = cur->next;
	}
fail:
	xml_restore(out, used);
	return -1;
}

/* ---- parsing (tests, tools) ----------------------------------------- */

struct xml_parse_ctx {
	struct xml_builder b;
	XML_Parser parser;
	const char *error;      /* first refusal, if any */
	const char *default_ns; /* of the context the text was written in */
	unsigned default_decls; /* xmlns='...' declarations in scope */
};

static void xml_parse_refuse(struct xml_parse_ctx *ctx, const char *error)
{
	if (ctx->error == NULL)
		ctx->error = error;
	XML_StopParser(ctx->parser, XML_FALSE);
}

static void XMLCALL xml_parse_start(void *ud, const char *name,
				    const char **atts)
{
	struct xml_parse_ctx *ctx = ud;

	xml_builder_start(&ctx->b, name, atts);
	if (ctx->b.failed) {
		xml_parse_refuse(ctx, "out of memory");
		return;
	}
	/* Unqualified, and no xmlns='...' in the text says otherwise: the
	 * default namespace of the context the text was written for. */
	struct xml_node *n = ctx->b.cur;
	if (n->ns[0] == '\0' && ctx->default_decls == 0 &&
	    ctx->default_ns[0] != '\0') {
		n->ns = xml_intern_ns(ctx->b.arena, ctx->default_ns,
				      strlen(ctx->default_ns), NULL);
		if (n->ns == NULL) {
			ctx->b.failed = 1;
			xml_parse_refuse(ctx, "out of memory");
		}
	}
}

static void XMLCALL xml_parse_ns_start(void *ud, const char *prefix,
				       const char *uri)
{
	struct xml_parse_ctx *ctx = ud;

	(void)uri;
	if (prefix == NULL)
		ctx->default_decls++;
}

static void XMLCALL xml_parse_ns_end(void *ud, const char *prefix)
{
	struct xml_parse_ctx *ctx = ud;

	if (prefix == NULL && ctx->default_decls > 0)
		ctx->default_decls--;
}

static void XMLCALL xml_parse_end(void *ud, const char *name)
{
	struct xml_parse_ctx *ctx = ud;

	(void)name;
	xml_builder_end(&ctx->b);
}

static void XMLCALL xml_parse_text(void *ud, const char *s, int len)
{
	struct xml_parse_ctx *ctx = ud;

	xml_builder_text(&ctx->b, s, len);
	if (ctx->b.failed)
		xml_parse_refuse(ctx, "out of memory");
}

static void XMLCALL xml_parse_comment(void *ud, const char *data)
{
	(void)data;
	xml_parse_refuse(ud, "restricted XML: comment");
}

static void XMLCALL xml_parse_pi(void *ud, const char *target,
				 const char *data)
{
	(void)target;
	(void)data;
	xml_parse_refuse(ud, "restricted XML: processing instruction");
}

static void XMLCALL xml_parse_doctype(void *ud, const char *name,
				      const char *sysid, const char *pubid,
				      int has_internal)
{
	(void)name;
	(void)sysid;
	(void)pubid;
	(void)has_internal;
	xml_parse_refuse(ud, "restricted XML: DTD");
}

static void XMLCALL xml_parse_entity(void *ud, const char *name, int pe,
				     const char *value, int vlen,
				     const char *base, const char *sysid,
				     const char *pubid, const char *notation)
{
	(void)name; (void)pe; (void)value; (void)vlen; (void)base;
	(void)sysid; (void)pubid; (void)notation;
	xml_parse_refuse(ud, "restricted XML: entity declaration");
}

static void xml_parse_handlers(struct xml_parse_ctx *ctx)
{
	XML_Parser p = ctx->parser;

	XML_SetUserData(p, ctx);
	XML_SetElementHandler(p, xml_parse_start, xml_parse_end);
	XML_SetCharacterDataHandler(p, xml_parse_text);
	XML_SetCommentHandler(p, xml_parse_comment);
	XML_SetProcessingInstructionHandler(p, xml_parse_pi);
	XML_SetStartDoctypeDeclHandler(p, xml_parse_doctype);
	XML_SetEntityDeclHandler(p, xml_parse_entity);
	XML_SetNamespaceDeclHandler(p, xml_parse_ns_start, xml_parse_ns_end);
}

struct xml_node *xml_parse(struct arena *a, const char *text, size_t len,
			   const char **error_r)
{
	return xml_parse_in(a, text, len, "", error_r);
}

struct xml_node *xml_parse_in(struct arena *a, const char *text, size_t len,
			      const char *default_ns, const char **error_r)
{
	struct xml_parse_ctx ctx = {
		.error = NULL,
		.default_ns = default_ns != NULL ? default_ns : "",
	};
	struct xml_node *root = NULL;

	if (len > INT_MAX) {
		*error_r = "input too large";
		return NULL;
	}
	ctx.parser = XML_ParserCreateNS("UTF-8", XML_NS_SEP);
	if (ctx.parser == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	xml_builder_init(&ctx.b, a);
	xml_parse_handlers(&ctx);
	if (XML_Parse(ctx.parser, text, (int)len, 1) == XML_STATUS_ERROR)
		*error_r = ctx.error != NULL ? ctx.error :
			   XML_ErrorString(XML_GetErrorCode(ctx.parser));
	else if ((root = xml_builder_done(&ctx.b)) == NULL)
		*error_r = "no complete element";
	XML_ParserFree(ctx.parser);
	return root;
}
