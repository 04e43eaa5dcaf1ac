/*
 * Einsum in plain C: the subscripts are parsed and checked at plan time into one loop nest
 * over the output and the summed dimensions; a summed dimension that only one operand reads is
 * summed inside that operand first. The work one Einsum may take is capped (EIN_MAX_WORK), so
 * hostile subscripts cannot make a run unbounded.
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Einsum ---- */

#define EIN_LABELS 52 /* a-z, A-Z */
#define EIN_MAX_IN 16
#define EIN_MAX_DIMS (EIN_LABELS + VEIL__ENGINE_RANK)
/* Multiply-adds one Einsum may take (operands x output elements x summed positions). */
#define EIN_MAX_WORK (1ull << 36)

/*
 * An equation resolved for given input shapes (kept in kp->ptr). Every distinct label and
 * every '...' dimension is one global dimension: the output's first, in its order, then the
 * summed ones. An operand's stride along a global dimension is 0 where it lacks it or
 * broadcasts it, and the sum of its axes' strides where a label repeats (a diagonal).
 */
struct einsum_plan {
    size_t n_in, n_dims, n_out;
    int64_t size[EIN_MAX_DIMS];
    int64_t st[EIN_MAX_IN][EIN_MAX_DIMS];
    /*
     * A summed dimension that only one operand reads ("bin,bck->": n and k) is summed inside
     * that operand first, into a dense partial sum over the operand's other dimensions (rst:
     * its strides, 0 elsewhere): the main loop then runs over the product of the remaining
     * dimensions only, not of every label (a sum of products factors). own[d]: the operand
     * that alone reads summed dimension d, or -1.
     */
    int8_t own[EIN_MAX_DIMS];
    bool reduce[EIN_MAX_IN];
    uint64_t rnumel[EIN_MAX_IN];
    int64_t rst[EIN_MAX_IN][EIN_MAX_DIMS];
    uint64_t red; /* summed positions the main loop visits per output element */
};

/* One term's subscripts: labels 0-51, and -1 for its '...' (at most one). */
struct ein_term {
    int8_t lab[VEIL__ENGINE_RANK + 1];
    size_t n;
    bool ell;
};

static int ein_label(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a';
    if (ch >= 'A' && ch <= 'Z')
        return 26 + (ch - 'A');
    return -1;
}

static char ein_char(int l)
{
    return (char)(l < 26 ? 'a' + l : 'A' + (l - 26));
}

/* Parses the subscripts in s[0, len) of the term called what (spaces are ignored). */
static veil_err ein_parse_term(const char *s, size_t len, struct ein_term *t, const char *what,
                               struct veil_errbuf *eb)
{
    t->n = 0;
    t->ell = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        int l = ein_label((char)ch);
        if (ch == ' ')
            continue;
        if (ch == '.') {
            if (len - i < 3 || s[i + 1] != '.' || s[i + 2] != '.')
                return veil_errf(eb, VEIL_E_INVALID, "equation: %s has a '.' outside '...'", what);
            if (t->ell)
                return veil_errf(eb, VEIL_E_INVALID, "equation: %s has more than one '...'", what);
            t->ell = true;
            i += 2;
        } else if (l < 0) {
            return veil_errf(eb, VEIL_E_INVALID, "equation: unexpected character 0x%02x in %s", ch,
                             what);
        }
        if (t->n == VEIL__ENGINE_RANK + 1)
            return veil_errf(eb, VEIL_E_INVALID, "equation: %s has more than %d subscripts", what,
                             VEIL__ENGINE_RANK);
        t->lab[t->n++] = (int8_t)(ch == '.' ? -1 : l);
    }
    return VEIL_OK;
}

/* Splits and parses the operands' terms (left of "->") and the output's, if given. */
static veil_err ein_parse(struct veil__engine_ictx *c, struct ein_term *terms, struct ein_term *out,
                          bool *explicit_out)
{
    const char *eq = veil__engine_attr_s(c->n, "equation", NULL);
    char what[32];
    veil_err rc;
    if (eq == NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "Einsum needs a string attribute 'equation'");
    size_t len = strlen(eq);
    const char *arrow = strstr(eq, "->");
    size_t lhs = arrow != NULL ? (size_t)(arrow - eq) : len;
    if (arrow != NULL && strstr(arrow + 2, "->") != NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "equation has more than one '->'");
    size_t nt = 0;
    for (size_t p = 0;;) {
        const char *comma = memchr(eq + p, ',', lhs - p);
        size_t end = comma != NULL ? (size_t)(comma - eq) : lhs;
        if (nt == c->n_in)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "equation has more operands than the %zu inputs", c->n_in);
        snprintf(what, sizeof(what), "operand %zu", nt);
        if ((rc = ein_parse_term(eq + p, end - p, &terms[nt], what, c->eb)) != VEIL_OK)
            return rc;
        nt++;
        if (comma == NULL)
            break;
        p = end + 1;
    }
    if (nt != c->n_in)
        return veil_errf(c->eb, VEIL_E_INVALID, "equation has %zu operands, node has %zu inputs",
                         nt, c->n_in);
    *explicit_out = arrow != NULL;
    if (arrow != NULL)
        return ein_parse_term(arrow + 2, len - lhs - 2, out, "the output", c->eb);
    return VEIL_OK;
}

veil_err veil__engine_einsum_infer(struct veil__engine_ictx *c)
{
    struct ein_term terms[EIN_MAX_IN], out;
    bool explicit_out = false;
    int64_t lsize[EIN_LABELS], esize[VEIL__ENGINE_RANK];
    uint32_t cnt[EIN_LABELS] = {0};
    size_t ell_rank = 0, ell_of[EIN_MAX_IN];
    bool any_ell = false;
    veil_err rc;

    if (c->n_in > EIN_MAX_IN)
        return veil_errf(c->eb, VEIL_E_LIMIT, "more than %d operands", EIN_MAX_IN);
    for (size_t i = 0; i < c->n_in; i++) {
        if (!veil__engine_has_input(c, i))
            return veil_errf(c->eb, VEIL_E_INVALID, "operand %zu is missing", i);
        if (c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "operands differ in type");
    }
    if (!veil__engine_dt_is_numeric(c->in[0].dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Einsum of %s", veil_dtype_name(c->in[0].dt));
    if ((rc = ein_parse(c, terms, &out, &explicit_out)) != VEIL_OK)
        return rc;
    for (size_t l = 0; l < EIN_LABELS; l++)
        lsize[l] = -1;
    for (size_t e = 0; e < VEIL__ENGINE_RANK; e++)
        esize[e] = 1;
    for (size_t i = 0; i < c->n_in; i++) {
        size_t letters = terms[i].n - (terms[i].ell ? 1 : 0), r = c->in[i].rank;
        if (terms[i].ell ? letters > r : letters != r)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "equation gives operand %zu %zu subscripts for rank %zu", i, letters,
                             r);
        ell_of[i] = r - letters;
        if (ell_of[i] > ell_rank)
            ell_rank = ell_of[i];
        any_ell = any_ell || terms[i].ell;
    }
    /* Label sizes must agree; '...' dimensions broadcast, aligned on the right. */
    for (size_t i = 0; i < c->n_in; i++) {
        const int64_t *dims = c->in[i].dims;
        for (size_t t = 0, a = 0; t < terms[i].n; t++) {
            int l = terms[i].lab[t];
            if (l < 0) {
                for (size_t e = ell_rank - ell_of[i]; e < ell_rank; e++, a++) {
                    if (esize[e] == 1)
                        esize[e] = dims[a];
                    else if (dims[a] != 1 && dims[a] != esize[e])
                        return veil_errf(c->eb, VEIL_E_INVALID,
                                         "'...' dimensions of sizes %lld and %lld do not "
                                         "broadcast",
                                         (long long)esize[e], (long long)dims[a]);
                }
                continue;
            }
            if (lsize[l] >= 0 && lsize[l] != dims[a])
                return veil_errf(c->eb, VEIL_E_INVALID, "label '%c' has sizes %lld and %lld",
                                 ein_char(l), (long long)lsize[l], (long long)dims[a]);
            lsize[l] = dims[a++];
            cnt[l]++;
        }
    }
    if (explicit_out) {
        bool seen[EIN_LABELS] = {false};
        for (size_t t = 0; t < out.n; t++) {
            int l = out.lab[t];
            if (l < 0)
                continue;
            if (cnt[l] == 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "output label '%c' is in no operand",
                                 ein_char(l));
            if (seen[l])
                return veil_errf(c->eb, VEIL_E_INVALID, "output repeats label '%c'", ein_char(l));
            seen[l] = true;
        }
        /* As numpy: '...' dimensions are never summed implicitly. */
        if (!out.ell && ell_rank > 0)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "the operands' '...' dimensions are missing from the output");
    } else {
        /* Implicit output: '...', then the labels used once, in ASCII order (A-Z, a-z). */
        out.n = 0;
        out.ell = any_ell;
        if (any_ell)
            out.lab[out.n++] = -1;
        for (int k = 0; k < EIN_LABELS; k++) {
            int l = k < 26 ? 26 + k : k - 26;
            if (cnt[l] != 1)
                continue;
            if (out.n == VEIL__ENGINE_RANK + 1)
                return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
            out.lab[out.n++] = (int8_t)l;
        }
    }
    if (out.n - (out.ell ? 1 : 0) + (out.ell ? ell_rank : 0) > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");

    struct einsum_plan *pl = veil_calloc(1, sizeof(*pl));
    if (pl == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for an Einsum plan");
    veil_free(c->kp->ptr);
    c->kp->ptr = pl;
    int gl[EIN_LABELS], ge[VEIL__ENGINE_RANK];
    for (size_t l = 0; l < EIN_LABELS; l++)
        gl[l] = -1;
    size_t n = 0;
    for (size_t t = 0; t < out.n; t++) {
        if (out.lab[t] >= 0) {
            gl[out.lab[t]] = (int)n;
            pl->size[n++] = lsize[out.lab[t]];
            continue;
        }
        for (size_t e = 0; e < ell_rank; e++) {
            ge[e] = (int)n;
            pl->size[n++] = esize[e];
        }
    }
    pl->n_out = n;
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = n;
    memcpy(c->out[0].dims, pl->size, n * sizeof(int64_t));
    for (size_t l = 0; l < EIN_LABELS; l++)
        if (cnt[l] > 0 && gl[l] < 0) {
            gl[l] = (int)n;
            pl->size[n++] = lsize[l];
        }
    pl->n_dims = n;
    pl->n_in = c->n_in;
    for (size_t i = 0; i < c->n_in; i++) {
        int64_t ist[VEIL__ENGINE_RANK];
        veil__engine_strides_of(c->in[i].dims, c->in[i].rank, ist);
        for (size_t t = 0, a = 0; t < terms[i].n; t++) {
            int l = terms[i].lab[t];
            if (l >= 0) {
                pl->st[i][gl[l]] += ist[a++];
                continue;
            }
            for (size_t e = ell_rank - ell_of[i]; e < ell_rank; e++, a++)
                if (c->in[i].dims[a] != 1)
                    pl->st[i][ge[e]] += ist[a];
        }
    }
    /* Summed dimensions read by one operand alone are summed inside it first. */
    for (size_t d = 0; d < n; d++) {
        pl->own[d] = -1;
        if (d < pl->n_out)
            continue;
        int readers = 0, who = -1;
        for (size_t i = 0; i < c->n_in; i++)
            if (pl->st[i][d] != 0) {
                readers++;
                who = (int)i;
            }
        if (readers == 1 && c->n_in > 1) {
            pl->own[d] = (int8_t)who;
            pl->reduce[who] = true;
        }
    }
    for (size_t i = 0; i < c->n_in; i++) {
        if (!pl->reduce[i])
            continue;
        uint64_t rn = 1;
        for (size_t d = n; d-- > 0;)
            if (pl->st[i][d] != 0 && pl->own[d] < 0) {
                pl->rst[i][d] = (int64_t)rn;
                rn *= (uint64_t)pl->size[d]; /* at most the operand's numel */
            }
        pl->rnumel[i] = rn;
    }
    /*
     * Every output element sums over the summed positions the main loop visits; the partial
     * sums read each operand once. Cap the whole loop nest.
     */
    uint64_t work = c->n_in, red = 1;
    bool empty = false;
    for (size_t d = 0; d < n; d++)
        empty = empty || pl->size[d] == 0;
    for (size_t d = 0; d < n && !empty; d++) {
        if (pl->own[d] >= 0)
            continue;
        if (d >= pl->n_out)
            red *= (uint64_t)pl->size[d];
        if (__builtin_mul_overflow(work, (uint64_t)pl->size[d], &work) || work > EIN_MAX_WORK)
            return veil_errf(c->eb, VEIL_E_LIMIT, "Einsum needs more than %llu multiply-adds",
                             (unsigned long long)EIN_MAX_WORK);
    }
    pl->red = empty ? 0 : red;
    return VEIL_OK;
}

struct einsum_job {
    const struct einsum_plan *pl;
    const struct veil__engine_tv *in; /* the operands, or their partial sums (einsum_reduce) */
    struct veil__engine_tv *out;
};

/* The stride of operand i along dimension d in the main loop (its partial sum's if reduced). */
static int64_t ein_st(const struct einsum_plan *pl, size_t i, size_t d)
{
    return pl->reduce[i] ? pl->rst[i][d] : pl->st[i][d];
}

/*
 * Sums operand i over the dimensions it alone reads into r (rnumel elements, zeroed, float64
 * for float operands, int64 otherwise), visiting every element of the operand once.
 */
static void einsum_reduce(const struct einsum_plan *pl, size_t i, const struct veil__engine_tv *in,
                          struct veil__engine_tv *r)
{
    size_t dims[EIN_MAX_DIMS], nd = 0;
    int64_t pos[EIN_MAX_DIMS] = {0}, off = 0, roff = 0;
    uint64_t total = 1;
    bool fl = veil__engine_dt_is_float(in->dt);
    for (size_t d = 0; d < pl->n_dims; d++)
        if (pl->st[i][d] != 0) {
            dims[nd++] = d;
            total *= (uint64_t)pl->size[d];
        }
    for (uint64_t k = 0; k < total; k++) {
        if (fl)
            veil__engine_set_f64(r, (uint64_t)roff,
                                 veil__engine_get_f64(r, (uint64_t)roff) +
                                     veil__engine_get_f64(in, (uint64_t)off));
        else /* wrapping, as the products of the main loop */
            veil__engine_set_i64(r, (uint64_t)roff,
                                 (int64_t)((uint64_t)veil__engine_get_i64(r, (uint64_t)roff) +
                                           (uint64_t)veil__engine_get_i64(in, (uint64_t)off)));
        for (size_t t = nd; t-- > 0;) {
            size_t d = dims[t];
            if (++pos[t] < pl->size[d]) {
                off += pl->st[i][d];
                roff += pl->rst[i][d];
                break;
            }
            pos[t] = 0;
            off -= (pl->size[d] - 1) * pl->st[i][d];
            roff -= (pl->size[d] - 1) * pl->rst[i][d];
        }
    }
}

/* Output elements [lo, hi): each sums the operands' product over the summed dimensions. */
static void einsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct einsum_job *j = ud;
    const struct einsum_plan *pl = j->pl;
    bool fl = veil__engine_dt_is_float(j->out->dt);
    size_t ni = pl->n_in;
    uint64_t red = pl->red;
    for (uint64_t o = lo; o < hi; o++) {
        int64_t off[EIN_MAX_IN] = {0}, pos[EIN_MAX_DIMS] = {0};
        uint64_t q = o;
        for (size_t d = pl->n_out; d-- > 0;) {
            int64_t x = (int64_t)(q % (uint64_t)pl->size[d]);
            q /= (uint64_t)pl->size[d];
            for (size_t i = 0; i < ni; i++)
                off[i] += x * ein_st(pl, i, d);
        }
        double fs = 0;
        uint64_t is = 0;
        for (uint64_t s = 0; s < red; s++) {
            if (fl) {
                double p = 1;
                for (size_t i = 0; i < ni; i++)
                    p *= veil__engine_get_f64(&j->in[i], (uint64_t)off[i]);
                fs += p;
            } else {
                uint64_t p = 1;
                for (size_t i = 0; i < ni; i++)
                    p *= (uint64_t)veil__engine_get_i64(&j->in[i], (uint64_t)off[i]);
                is += p;
            }
            /* Next summed position, the last dimension fastest (not those summed inside). */
            for (size_t d = pl->n_dims; d-- > pl->n_out;) {
                if (pl->own[d] >= 0)
                    continue;
                if (++pos[d] < pl->size[d]) {
                    for (size_t i = 0; i < ni; i++)
                        off[i] += ein_st(pl, i, d);
                    break;
                }
                pos[d] = 0;
                for (size_t i = 0; i < ni; i++)
                    off[i] -= (pl->size[d] - 1) * ein_st(pl, i, d);
            }
        }
        if (fl)
            veil__engine_set_f64(j->out, o, fs);
        else
            veil__engine_set_i64(j->out, o, (int64_t)is);
    }
}

veil_err veil__engine_einsum_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    const struct einsum_plan *pl = kp->ptr;
    struct veil__engine_tv src[EIN_MAX_IN];
    veil_err rc = VEIL_OK;
    for (size_t i = 0; i < pl->n_in; i++)
        src[i] = c->in[i];
    for (size_t i = 0; i < pl->n_in; i++) {
        if (!pl->reduce[i])
            continue;
        /* Partial sums are at most as large as the operand; they live for this run only. */
        bool fl = veil__engine_dt_is_float(c->in[i].dt);
        src[i].dt = fl ? VEIL_DT_DOUBLE : VEIL_DT_INT64;
        src[i].rank = 1;
        src[i].dims[0] = (int64_t)pl->rnumel[i];
        src[i].numel = pl->rnumel[i];
        src[i].data = veil_calloc(pl->rnumel[i] > 0 ? pl->rnumel[i] : 1, 8);
        if (src[i].data == NULL) {
            rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for an Einsum partial sum");
            break;
        }
        einsum_reduce(pl, i, &c->in[i], &src[i]);
    }
    if (rc == VEIL_OK) {
        struct einsum_job j = {pl, src, &c->out[0]};
        veil__engine_parallel(c->out[0].numel, 1 + 4096 / (pl->red + 1), einsum_range, &j);
    }
    for (size_t i = 0; i < pl->n_in; i++)
        if (pl->reduce[i] && src[i].data != c->in[i].data)
            veil_free(src[i].data);
    return rc;
}
