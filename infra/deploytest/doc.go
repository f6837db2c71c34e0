// Package deploytest checks kinlog's deployment files without deploying them: it holds tests
// only, run with `go test ./infra/deploytest`. Nothing here talks to a network.
//
// # What is checked
//
//   - infra/docker/Dockerfile: parsed into instructions; a static (CGO_ENABLED=0, -trimpath,
//     stripped) build of ./cmd/kinlog copied into a non-root distroless final stage whose
//     EXPOSE and CMD agree with the Kubernetes Deployment. No Docker engine is needed (and
//     none is used): the image itself is not built here.
//   - infra/k8s: every manifest decoded with a YAML decoder; the kinds, probes, resources,
//     non-root and read-only security settings, the grace period against the configured
//     shutdown deadline, and that the Service, PodDisruptionBudget and ServiceMonitor select
//     the Deployment's pods.
//   - infra/terraform: parsed with HCL; the stream, lease table, bucket, KMS key and Glue
//     table have the settings the pipeline relies on, with expressions evaluated against the
//     variables' defaults and against other values.
//   - IAM: every action in every policy document of the module is extracted and compared,
//     role by role, with the set derived from the code: the methods of the small AWS client
//     interfaces that producer/, consumer/, checkpoint/dynamodb, sinks/s3 and query/
//     declare, read by reflection and mapped to IAM actions. A new SDK call in the code
//     without a matching grant (or a grant the code no longer needs) fails the test.
//   - infra/grafana: the dashboard JSON parses, every query uses kinlog_ metrics, and the
//     producer and consumer metrics it queries are ones their collectors describe.
//
// # Failing checks
//
// Each check is a function that returns the problems it finds; the tests run it on the real
// files (no problems expected) and on deliberately broken copies (the problem must be
// reported), so a check that cannot fail is itself caught.
package deploytest
