/*
 * Model files as the server and `veil run` find them: a plaintext ONNX file whose external data
 * lies in its folder, or the plaintext of a sealed file, which may be a bundle of the model and
 * its data files (docs/format/external-data.md).
 */
#include "veil/serve.h"

#include <libgen.h>
#include <string.h>

veil_err veil_serve_model_from_plain(struct veil_span plain, const struct veil_seal_header *hdr,
                                     const struct veil_engine_options *opt,
                                     struct veil_engine_model **out, struct veil_errbuf *eb)
{
    *out = NULL;
    if (strcmp(hdr->content_type, VEIL_ONNX_BUNDLE_CONTENT_TYPE) != 0)
        return veil_engine_model_load(plain, opt, out, eb);
    struct veil_onnx_bundle b;
    veil_err rc = veil_onnx_bundle_parse(plain, &b, eb);
    if (rc != VEIL_OK)
        return rc;
    struct veil_onnx_external ext = veil_onnx_bundle_external(&b);
    rc = veil_engine_model_load_external(b.files[0].bytes, &ext, opt, out, eb);
    veil_onnx_bundle_release(&b);
    return rc;
}

veil_err veil_serve_model_from_file(const char *path, const struct veil_engine_options *opt,
                                    struct veil_engine_model **out, struct veil_errbuf *eb)
{
    *out = NULL;
    struct veil_buf b;
    struct veil_onnx_dir *dir = NULL;
    char *copy = veil_strdup(path);
    veil_err rc = VEIL_OK;
    veil_buf_init(&b, VEIL_LIMIT_MODEL_BYTES);
    if (copy == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for a path");
        goto out;
    }
    if ((rc = veil_file_read_all(path, VEIL_LIMIT_MODEL_BYTES, &b, eb)) != VEIL_OK)
        goto out;
    /* Only a model that names external data opens its folder. */
    if (!veil_onnx_has_external_data(veil_buf_span(&b))) {
        rc = veil_engine_model_load(veil_buf_span(&b), opt, out, eb);
        goto out;
    }
    if ((rc = veil_onnx_dir_open(dirname(copy), &dir, eb)) != VEIL_OK)
        goto out;
    struct veil_onnx_external ext = veil_onnx_dir_external(dir);
    rc = veil_engine_model_load_external(veil_buf_span(&b), &ext, opt, out, eb);
out:
    veil_onnx_dir_free(dir);
    veil_free(copy);
    veil_buf_release(&b);
    return rc;
}
