// llama_logits: print llama.cpp's tokens, per-position logits and greedy
// continuation for a prompt, as JSON on stdout, for suanli's golden files.
//
// Build (see gen_llama_goldens.py): gcc -O2 llama_logits.c -I$LLAMA/include
//   -I$LLAMA/ggml/include -L$LLAMA/build/bin -lllama -o llama_logits
// Usage: llama_logits MODEL PROMPT_FILE N_GEN THREADS LOGITS_OUT.bin
// The prompt is tokenized with add_special=true, parse_special=true (as
// llama-completion does); logits of every prompt position and of each
// generated step are appended to LOGITS_OUT.bin as f32. A PROMPT_FILE whose
// name ends in .ids holds whitespace-separated token ids, decoded as given.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"
#include "ggml.h"

// With LLAMA_TRACE set, print name, shape, sum and first values of the graph
// nodes of layer LLAMA_TRACE_LAYER (default 0; with LLAMA_TRACE_ALL, every
// layer's l_out) for token row LLAMA_TRACE_ROW, to diff against suanli's
// examples/logits_dump (same variables with the SUANLI_ prefix).
static bool trace_cb(struct ggml_tensor *t, bool ask, void *ud) {
    (void)ud;
    if (ask) return true;
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) return true;
    const char *nm = t->name;
    char lay[16]; snprintf(lay, sizeof lay, "-%s", getenv("LLAMA_TRACE_LAYER") ? getenv("LLAMA_TRACE_LAYER") : "0");
    if (!strstr(nm, lay) && !strstr(nm, "result") && !(getenv("LLAMA_TRACE_ALL") && strstr(nm, "l_out"))) return true;
    const float *d = (const float *)t->data;
    int64_t ne = ggml_nelements(t);
    // LLAMA_DUMP=NAME:FILE writes each evaluation of node NAME to FILE.0, FILE.1, ...
    const char *dn = getenv("LLAMA_DUMP");
    const char *colon = dn ? strchr(dn, ':') : NULL;
    if (colon && strlen(nm) == (size_t)(colon - dn) && !strncmp(dn, nm, colon - dn)) {
        static int count = 0; char fn[512];
        snprintf(fn, sizeof fn, "%s.%d", colon + 1, count++);
        FILE *f = fopen(fn, "wb");
        if (f) { fwrite(d, sizeof(float), ne, f); fclose(f); }
    }
    // Row R of the batch: for [d, tokens] that is d values; for
    // [d, heads, tokens], d * heads values.
    const char *rs = getenv("LLAMA_TRACE_ROW");
    if (rs) {
        int64_t row = atoll(rs);
        int64_t w = (t->ne[2] > 1 && t->ne[1] > 1) ? t->ne[0] * t->ne[1] : t->ne[0];
        if ((row + 1) * w > ne) {
            return true;
        }
        d += row * w;
        ne = w;
    }
    double sum = 0;
    for (int64_t i = 0; i < ne; i++) sum += d[i];
    fprintf(stderr, "TRACE %-24s [%lld,%lld,%lld] sum=%.6f first=%.6f %.6f %.6f %.6f\n", nm,
            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], sum, d[0], d[1], d[2], d[3]);
    return true;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s MODEL PROMPT_FILE N_GEN THREADS OUT.bin\n", argv[0]); return 2; }
    FILE *pf = fopen(argv[2], "rb");
    if (!pf) { perror(argv[2]); return 1; }
    fseek(pf, 0, SEEK_END); long plen = ftell(pf); fseek(pf, 0, SEEK_SET);
    char *prompt = calloc(plen + 1, 1);
    if (fread(prompt, 1, plen, pf) != (size_t)plen) { perror("read"); return 1; }
    fclose(pf);
    int n_gen = atoi(argv[3]), threads = atoi(argv[4]);

    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    int cap = plen + 16;
    llama_token *toks = malloc(sizeof(llama_token) * cap);
    int n;
    if (strlen(argv[2]) > 4 && !strcmp(argv[2] + strlen(argv[2]) - 4, ".ids")) {
        // A file of token ids: decode them as given.
        n = 0; char *p = prompt, *e;
        for (long v = strtol(p, &e, 10); e != p; v = strtol(p, &e, 10)) { toks[n++] = (llama_token)v; p = e; }
    } else {
        n = llama_tokenize(vocab, prompt, plen, toks, cap, true, true);
    }
    if (n < 0) { fprintf(stderr, "tokenize failed\n"); return 1; }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048; cp.n_batch = 2048; cp.n_ubatch = 512;
    cp.n_threads = threads; cp.n_threads_batch = threads;
    if (getenv("LLAMA_TRACE")) { cp.cb_eval = trace_cb; cp.cb_eval_user_data = NULL; }
    // LLAMA_F32_ATTN set: f32 KV cache and no flash attention (whose CPU
    // kernel rounds to f16 whatever the cache type), for f32 reference logits.
    if (getenv("LLAMA_F32_ATTN")) {
        cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);

    FILE *out = fopen(argv[5], "wb");
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = toks[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out);

    printf("{\"n_vocab\": %d, \"prompt_tokens\": [", n_vocab);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", toks[i]);
    printf("], \"generated\": [");
    const float *lg = llama_get_logits_ith(ctx, n - 1);
    for (int s = 0; s < n_gen; s++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++) if (lg[v] > lg[best]) best = v;
        if (llama_vocab_is_eog(vocab, best)) break;
        printf("%s%d", s ? ", " : "", best);
        struct llama_batch one = llama_batch_get_one(&best, 1);
        if (llama_decode(ctx, one)) { fprintf(stderr, "decode failed\n"); return 1; }
        lg = llama_get_logits_ith(ctx, -1);
        fwrite(lg, sizeof(float), n_vocab, out);
    }
    printf("]}\n");
    fclose(out);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
