/* Fuzzes the policy parser: any input is either a policy or a refusal with a message. */
#include "attest/attest_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_attest_policy *p = NULL;
    struct veil_errbuf eb = {{0}};
    veil_err rc = veil_attest_policy_parse(veil_span_make(data, size), &p, &eb);
    if (rc == VEIL_OK) {
        for (size_t i = 0; i < veil_attest_policy_workload_count(p); i++) {
            const struct veil_attest_workload *w = veil_attest_policy_workload(p, i);
            VEIL_ASSERT(veil_attest_workload_name(w)[0] != '\0');
            for (size_t k = 0; k < veil_attest_workload_key_count(w); k++)
                VEIL_ASSERT(veil_attest_workload_may_receive(w, veil_attest_workload_key(w, k)));
        }
    } else {
        VEIL_ASSERT(p == NULL && (rc == VEIL_E_NOMEM || eb.msg[0] != '\0'));
    }
    veil_attest_policy_free(p);
    return 0;
}
