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
//   - infra/k8s/agent: the agent's DaemonSet, decoded likewise: the kubelet's log directories
//     mounted read-only at their own paths, the state directory a writable hostPath that
//     outlives the pod, probes on the agent.yaml's http.listen port, the grace period against
//     its shutdown.timeout, root without capabilities on a read-only root file system, a
//     namespace whose Pod Security level admits hostPath volumes (not the consumer's), and
//     the producer role's IRSA trust of the agent's ServiceAccount.
//   - agent.yaml (the ConfigMap's and infra/systemd's): checked for the required keys and
//     values the manifests depend on; the agent itself (`kinlog agent --check`, in
//     cmd/kinlog's tests) is the authority on its keys.
//   - infra/systemd/kinlog-agent.service: parsed as an INI unit file; ExecStart, Restart,
//     TimeoutStopSec against shutdown.timeout, StateDirectory against state_dir,
//     RuntimeDirectory for the socket, a non-root user and the hardening settings. Where
//     systemd-analyze is installed, `systemd-analyze verify` must accept the unit without a
//     warning and (systemd 250 or later) `systemd-analyze security --offline` must rate it
//     2.5 or better; without the tool those two checks are not run.
//   - infra/terraform: parsed with HCL; the stream, lease table, bucket, KMS key and Glue
//     table have the settings the pipeline relies on, with expressions evaluated against the
//     variables' defaults and against other values.
//   - IAM: every action in every policy document of the module is extracted and compared,
//     role by role and resource by resource, with the set derived from the code: the
//     methods of the small AWS client interfaces that producer/, consumer/,
//     checkpoint/dynamodb, sinks/s3, query/ and lambda/ declare, read by reflection (which
//     includes embedded interfaces: lambda.S3API is sinks/s3.API plus DeleteObject) and
//     mapped to IAM actions, plus the calls AWS services make with a role's credentials (the
//     Lambda event source mapping's stream reads, its S3 on-failure destination, the
//     function's logs), each listed with the AWS page that requires it. A new SDK call in
//     the code without a matching grant (or a grant the code no longer needs) fails the
//     test. A source scan keeps the derivation complete: every AWS client interface of a
//     role's code is listed, every SDK input it builds is derived, and every package the
//     function's command (cmd/kinlog-lambda) links in that calls AWS is either the role's
//     or never given a client (checked by what the command's code names).
//   - Serverless mode (infra/terraform/lambda.tf): nothing is created without lambda_zip;
//     the function is the provided.al2023 bootstrap with the worker's configuration keys
//     (read from cmd/kinlog's and internal/conf's types by a source scan) and the values of
//     the worker's ConfigMap; the event source mapping reports batch item failures, has a
//     parallelization factor fixed at 1 and an S3 on-failure destination, and takes batch
//     size, window, retries, record age and bisection from variables whose validations
//     accept exactly AWS's ranges.
//   - infra/grafana: the dashboard JSON parses, every query uses kinlog_ metrics, and the
//     producer and consumer metrics it queries are ones their collectors describe.
//
// # Failing checks
//
// Each check is a function that returns the problems it finds; the tests run it on the real
// files (no problems expected) and on deliberately broken copies (the problem must be
// reported), so a check that cannot fail is itself caught.
package deploytest
