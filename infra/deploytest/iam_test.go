package deploytest

import (
	"cmp"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	ddbstore "github.com/kinlog/kinlog/checkpoint/dynamodb"
	"github.com/kinlog/kinlog/consumer"
	fnlambda "github.com/kinlog/kinlog/lambda"
	"github.com/kinlog/kinlog/producer"
	"github.com/kinlog/kinlog/query"
	sinks3 "github.com/kinlog/kinlog/sinks/s3"
)

// The IAM check: the actions the policies grant must be exactly the actions the code needs.
//
// What the code needs is derived, not written down: each package that calls AWS declares a
// small interface with only the SDK calls it makes; the test reads those method sets by
// reflection and maps each SDK operation (named by its input type, e.g.
// *kinesis.PutRecordsInput) to the IAM actions that authorise it. A source scan makes sure
// no AWS client interface is left out of the list below and that no SDK input is built in a
// package outside the interfaces' reach.

// awsClient is one AWS client interface of the code.
type awsClient struct {
	dir  string       // package directory, relative to the repository root
	name string       // interface type name
	typ  reflect.Type // the interface, or nil while the package does not declare it yet
	// pending lists "service:Operation" for the SDK calls a package is expected to make, used
	// only while typ is nil. Replace it with typ as soon as the interface exists.
	pending []string
}

// roleClients says which code runs under which IAM role: the producer role for apps that
// embed producer/, the consumer role for `kinlog consume` (consumer, lease store, S3 sink),
// the reader role for `kinlog query`, the lambda role for the function of serverless mode
// (cmd/kinlog-lambda: lambda/ and the S3 sink it shares with the worker). An interface that
// embeds another (lambda.S3API embeds sinks/s3.API) is read with the embedded methods:
// reflection flattens method sets.
var roleClients = map[string][]awsClient{
	"producer": {
		{dir: "producer", name: "Client", typ: reflect.TypeFor[producer.Client]()},
	},
	"consumer": {
		{dir: "consumer", name: "KinesisAPI", typ: reflect.TypeFor[consumer.KinesisAPI]()},
		{dir: "consumer", name: "MultiStreamAPI", typ: reflect.TypeFor[consumer.MultiStreamAPI]()},
		{dir: "consumer", name: "FanOutAPI", typ: reflect.TypeFor[consumer.FanOutAPI]()},
		{dir: "consumer", name: "StreamConsumerDeregisterer", typ: reflect.TypeFor[consumer.StreamConsumerDeregisterer]()},
		{dir: "checkpoint/dynamodb", name: "API", typ: reflect.TypeFor[ddbstore.API]()},
		{dir: "sinks/s3", name: "API", typ: reflect.TypeFor[sinks3.API]()},
	},
	"reader": {
		{dir: "query", name: "S3API", typ: reflect.TypeFor[query.S3API]()},
	},
	"lambda": {
		{dir: "lambda", name: "S3API", typ: reflect.TypeFor[fnlambda.S3API]()},
		{dir: "lambda", name: "DynamoDBAPI", typ: reflect.TypeFor[fnlambda.DynamoDBAPI]()},
		{dir: "lambda", name: "KinesisAPI", typ: reflect.TypeFor[fnlambda.KinesisAPI]()},
	},
}

// roleDirs are the source trees whose code runs under each role. The sink's tree is shared
// by the worker and the function; nothing else is. A role's command (roleCommands) is
// scanned with its main package.
var roleDirs = map[string][]string{
	"producer": {"producer"},
	"consumer": {"consumer", "checkpoint", "sinks"},
	"reader":   {"query"},
	"lambda":   {"lambda", "sinks", "cmd/kinlog-lambda"},
}

// roleCommands are the programs that run under nothing but their role. Every package they
// import (transitively, within the module) that calls AWS must lie in the role's dirs, or
// its AWS client interfaces must be listed in roleUnused. The worker's command, cmd/kinlog,
// runs every role's code and is not listed.
var roleCommands = map[string]string{
	"lambda": "cmd/kinlog-lambda",
}

// unusedClient is an AWS client interface in code a role's command links in but never
// gives a client: outside the interface's own package, the code the command links in may
// not name the interface, a function that takes it, or a method of that name (checked by
// TestAWSClientInterfacesAreListed). In its own package, the SDK inputs built by those
// functions and by the types holding such a client are not the role's.
type unusedClient struct {
	dir, name string
	why       string
}

var roleUnused = map[string][]unusedClient{
	"lambda": {
		{dir: "lambda", name: "TableAPI", why: "lambda.CreateProgressTable is for local stacks and tests; terraform creates the progress table"},
		{dir: "lambda", name: "ReplayKinesisAPI", why: "Function.Replay is `kinlog replay`'s, run with the operator's credentials; the function never replays"},
		{dir: "lambda", name: "ReplayS3API", why: "Function.Replay is `kinlog replay`'s, run with the operator's credentials; the function never replays"},
		{dir: "consumer", name: "KinesisAPI", why: "lambda/ uses consumer.Record only; the event source mapping reads the stream"},
		{dir: "consumer", name: "FanOutAPI", why: "lambda/ uses consumer.Record only; the event source mapping reads the stream"},
		{dir: "consumer", name: "MultiStreamAPI", why: "lambda/ uses consumer.Record only; the event source mapping reads the stream"},
		{dir: "consumer", name: "StreamConsumerDeregisterer", why: "lambda/ uses consumer.Record only; deregistering is `kinlog checkpoint deregister-consumer`'s"},
	},
}

// roleTables are the DynamoDB tables each role's code works on: the consumer's lease table
// and the coordinator table of leader assignment (consumer.WithLeaderAssignment), the same
// store code on both.
var roleTables = map[string][]string{
	"consumer": {"aws_dynamodb_table.leases.arn", "aws_dynamodb_table.coordinator.arn"},
	"lambda":   {"aws_dynamodb_table.lambda_progress[0].arn"},
}

// extraGrant is a permission a role needs for calls our code does not make: the AWS
// service acting with the role's credentials. Each names the AWS documentation that
// requires it.
type extraGrant struct {
	actions  []string
	resource string // as resourceRefs reads it: "ref" or "ref + suffix"
	doc      string
}

// roleExtraGrants lists them by role.
var roleExtraGrants = map[string][]extraGrant{
	"lambda": {
		// The event source mapping polls the stream (standard iterator) with the function's
		// execution role. The guide lists kinesis:SubscribeToShard too, for enhanced fan-out
		// consumers (the mapping is on the stream, not a consumer, so it is not granted);
		// older versions and the AWSLambdaKinesisExecutionRole policy add kinesis:ListStreams,
		// which the current list does not name and which cannot be scoped to a stream.
		{
			actions:  []string{"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"},
			resource: "aws_kinesis_stream.this.arn",
			doc:      "https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html (execution role permissions)",
		},
		// The S3 on-failure destination: "For an S3 destination: s3:PutObject and
		// s3:ListBucket" (with the module's KMS key on the bucket, kms:GenerateDataKey, which
		// the KMS derivation below adds for s3:PutObject).
		{
			actions:  []string{"s3:PutObject"},
			resource: "aws_s3_bucket.lambda_failures[0].arn + /*",
			doc:      "https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html",
		},
		{
			actions:  []string{"s3:ListBucket"},
			resource: "aws_s3_bucket.lambda_failures[0].arn",
			doc:      "https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html",
		},
		// Lambda sends the function's output to its log group. The guide lists
		// logs:CreateLogGroup too; terraform creates the group (with a retention), so the
		// role may not.
		{
			actions:  []string{"logs:CreateLogStream", "logs:PutLogEvents"},
			resource: "aws_cloudwatch_log_group.lambda[0].arn + :*",
			doc:      "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html (required IAM permissions)",
		},
	},
}

// sdkOp is one SDK operation, e.g. {kinesis PutRecords}.
type sdkOp struct{ service, op string }

func (o sdkOp) String() string { return o.service + ":" + o.op }

const sdkServicePrefix = "github.com/aws/aws-sdk-go-v2/service/"

// interfaceOps reads the SDK operations of an interface's method set. Every method must look
// like an SDK client method: (context.Context, *<service>.<Op>Input, ...func(*<service>.Options)).
func interfaceOps(t reflect.Type) ([]sdkOp, error) {
	if t.Kind() != reflect.Interface {
		return nil, fmt.Errorf("%s is not an interface", t)
	}
	var ops []sdkOp
	ctxType := reflect.TypeFor[context.Context]()
	for i := range t.NumMethod() {
		m := t.Method(i)
		ft := m.Type
		if ft.NumIn() < 2 || ft.In(0) != ctxType || ft.In(1).Kind() != reflect.Pointer {
			return nil, fmt.Errorf("%s.%s is not an SDK call (ctx, *XInput, ...)", t, m.Name)
		}
		in := ft.In(1).Elem()
		op, ok := strings.CutSuffix(in.Name(), "Input")
		if !ok || !strings.HasPrefix(in.PkgPath(), sdkServicePrefix) {
			return nil, fmt.Errorf("%s.%s takes %s, not an aws-sdk-go-v2 service input", t, m.Name, in)
		}
		ops = append(ops, sdkOp{path.Base(in.PkgPath()), op})
	}
	return ops, nil
}

// s3Actions maps S3 operations to the IAM actions that authorise them; S3's action names
// differ from its operation names.
var s3Actions = map[string][]string{
	"PutObject":               {"s3:PutObject"},
	"CreateMultipartUpload":   {"s3:PutObject"},
	"UploadPart":              {"s3:PutObject"},
	"CompleteMultipartUpload": {"s3:PutObject"},
	"AbortMultipartUpload":    {"s3:AbortMultipartUpload"},
	"ListParts":               {"s3:ListMultipartUploadParts"},
	"ListMultipartUploads":    {"s3:ListBucketMultipartUploads"},
	"GetObject":               {"s3:GetObject"},
	"HeadObject":              {"s3:GetObject"},
	"ListObjectsV2":           {"s3:ListBucket"},
	"ListObjects":             {"s3:ListBucket"},
	"HeadBucket":              {"s3:ListBucket"},
	"DeleteObject":            {"s3:DeleteObject"},
	"DeleteObjects":           {"s3:DeleteObject"},
	"CopyObject":              {"s3:GetObject", "s3:PutObject"},
	"GetBucketLocation":       {"s3:GetBucketLocation"},
}

// actionsFor maps one operation to IAM actions. Kinesis and DynamoDB name their actions after
// their operations, except DynamoDB's transactions, which are authorised per item operation.
func actionsFor(o sdkOp) ([]string, error) {
	switch o.service {
	case "kinesis":
		return []string{"kinesis:" + o.op}, nil
	case "dynamodb":
		if strings.HasPrefix(o.op, "Transact") {
			return nil, fmt.Errorf("%s is authorised per item action: map it here explicitly", o)
		}
		return []string{"dynamodb:" + o.op}, nil
	case "s3":
		if a, ok := s3Actions[o.op]; ok {
			return a, nil
		}
	}
	return nil, fmt.Errorf("no IAM mapping for %s: add one to actionsFor", o)
}

// roleOps lists the SDK operations of a role's code.
func roleOps(role string) ([]sdkOp, error) {
	var ops []sdkOp
	for _, c := range roleClients[role] {
		if c.typ == nil {
			for _, p := range c.pending {
				svc, op, _ := strings.Cut(p, ":")
				ops = append(ops, sdkOp{svc, op})
			}
			continue
		}
		o, err := interfaceOps(c.typ)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

// Operations after which KMS is involved, on an encrypted stream or SSE-KMS bucket.
var (
	kinesisWrites = []string{"PutRecord", "PutRecords"}
	kinesisReads  = []string{"GetRecords", "SubscribeToShard"}
	s3NewData     = []string{"PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject"}
	s3ReadData    = []string{"GetObject", "UploadPart", "CompleteMultipartUpload", "CopyObject"}
)

// wantGrants derives the exact grants a role's policy must make, as action → the resources
// it is granted on, for the given values of the variables that change them: the actions of
// the role's code, each on its resource (resourceFor), the role's extra grants, and the KMS
// actions these imply.
func wantGrants(role string, vars cty.Value) (map[string][]string, error) {
	ops, err := roleOps(role)
	if err != nil {
		return nil, err
	}
	want := map[string]map[string]bool{}
	grant := func(action, resource string) {
		if want[action] == nil {
			want[action] = map[string]bool{}
		}
		want[action][resource] = true
	}
	for _, o := range ops {
		if o == (sdkOp{"dynamodb", "CreateTable"}) && vars.GetAttr("allow_lease_table_creation").False() {
			continue // the table comes from terraform; granted only when asked for
		}
		as, err := actionsFor(o)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			for _, r := range resourcesFor(role, a) {
				grant(a, r)
			}
		}
	}
	// The AWS services' calls with the role's credentials. Their actions are named after
	// their operations, so they count as operations for the KMS rules below.
	for _, g := range roleExtraGrants[role] {
		for _, a := range g.actions {
			grant(a, g.resource)
			svc, op, _ := strings.Cut(a, ":")
			ops = append(ops, sdkOp{svc, op})
		}
	}
	has := func(service string, names []string) bool {
		return slices.ContainsFunc(ops, func(o sdkOp) bool { return o.service == service && slices.Contains(names, o.op) })
	}
	// The stream is always KMS-encrypted: writers generate data keys, readers decrypt.
	if has("kinesis", kinesisWrites) {
		grant("kms:GenerateDataKey", resourceFor(role, "kms:GenerateDataKey"))
	}
	if has("kinesis", kinesisReads) {
		grant("kms:Decrypt", resourceFor(role, "kms:Decrypt"))
	}
	if vars.GetAttr("s3_sse_algorithm").AsString() == "aws:kms" {
		if has("s3", s3NewData) {
			grant("kms:GenerateDataKey", resourceFor(role, "kms:GenerateDataKey"))
		}
		if has("s3", s3ReadData) {
			grant("kms:Decrypt", resourceFor(role, "kms:Decrypt"))
		}
	}
	out := map[string][]string{}
	for a, rs := range want {
		out[a] = sortedKeys(rs)
	}
	return out, nil
}

// whoNeeds says where a derived grant comes from: the code, or the AWS page of an extra grant.
func whoNeeds(role, action, resource string) string {
	for _, g := range roleExtraGrants[role] {
		if g.resource == resource && slices.Contains(g.actions, action) {
			return "the AWS service needs (" + g.doc + ")"
		}
	}
	return "the code needs"
}

// resourcesFor names the resources (each a reference plus a literal suffix) an action of a
// role's code may be granted on: one, except for DynamoDB, whose actions go to each of the
// role's tables (Query to their indexes: the store queries the owner index).
func resourcesFor(role, action string) []string {
	svc, op, _ := strings.Cut(action, ":")
	if svc == "dynamodb" {
		ts, ok := roleTables[role]
		if !ok {
			return []string{"(no DynamoDB table known for the " + role + " role: add it to roleTables)"}
		}
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t
			if op == "Query" {
				out[i] = t + " + /index/*"
			}
		}
		return out
	}
	return []string{resourceFor(role, action)}
}

// resourceFor names the one resource (a reference plus a literal suffix) an action of a
// role's code other than DynamoDB's may be granted on.
func resourceFor(role, action string) string {
	svc, op, _ := strings.Cut(action, ":")
	switch svc {
	case "kinesis":
		if slices.Contains([]string{"SubscribeToShard", "DescribeStreamConsumer"}, op) {
			return "aws_kinesis_stream.this.arn + /consumer/*"
		}
		return "aws_kinesis_stream.this.arn"
	case "s3":
		if slices.Contains([]string{"ListBucket", "ListBucketMultipartUploads", "GetBucketLocation"}, op) {
			return "aws_s3_bucket.archive.arn"
		}
		return "aws_s3_bucket.archive.arn + /*"
	case "kms":
		return "local.kms_key_arn"
	}
	return "(no resource known for " + action + ")"
}

// policyDocs classifies every aws_iam_policy_document of the module.
var policyDocs = map[string]string{
	"producer":        "permissions",
	"consumer":        "permissions",
	"producer_assume": "trust",
	"consumer_assume": "trust",
	"reader":          "permissions",
	"reader_assume":   "trust",
	"archive_bucket":  "deny",

	"lambda":                 "permissions",
	"lambda_assume":          "trust",
	"lambda_failures_bucket": "deny",
}

type statement struct {
	sid        string
	effect     string
	actions    []string
	resources  []string // "ref" or "ref + suffix"
	conditions map[string][]string
	problems   problems
}

// resourceRefs reads a statement's resources syntactically: each element must be a
// reference to a module resource or local, optionally followed by a literal suffix
// ("${aws_s3_bucket.archive.arn}/*"). A literal ARN or "*" is reported.
func resourceRefs(expr hclsyntax.Expression) ([]string, error) {
	tup, ok := expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil, fmt.Errorf("resources must be a list of references, got %T", expr)
	}
	var out []string
	for _, e := range tup.Exprs {
		var ref, suffix string
		switch x := e.(type) {
		case *hclsyntax.ScopeTraversalExpr:
			ref = traversalString(x.Traversal)
		case *hclsyntax.TemplateExpr:
			if len(x.Parts) == 0 {
				return nil, fmt.Errorf("empty resource")
			}
			tr, ok := x.Parts[0].(*hclsyntax.ScopeTraversalExpr)
			if !ok {
				return nil, fmt.Errorf("resource %s does not start with a reference to a module resource", exprSource(x))
			}
			ref = traversalString(tr.Traversal)
			for _, p := range x.Parts[1:] {
				lit, ok := p.(*hclsyntax.LiteralValueExpr)
				if !ok || lit.Val.Type() != cty.String {
					return nil, fmt.Errorf("resource %s: only a literal may follow the reference", exprSource(x))
				}
				suffix += lit.Val.AsString()
			}
		default:
			return nil, fmt.Errorf("resource %s is not a reference to a module resource", exprSource(e))
		}
		if strings.HasPrefix(ref, "var.") {
			return nil, fmt.Errorf("resource %s comes from a variable, not a module resource", ref)
		}
		if suffix != "" {
			ref += " + " + suffix
		}
		out = append(out, ref)
	}
	return out, nil
}

func exprSource(e hclsyntax.Expression) string {
	r := e.Range()
	return fmt.Sprintf("at %s:%d", r.Filename, r.Start.Line)
}

// statements evaluates the statements of a policy document (dynamic ones expanded).
func statements(m *tfModule, doc string, ctx *hcl.EvalContext) ([]statement, error) {
	b := m.block("data", "aws_iam_policy_document", doc)
	if b == nil {
		return nil, fmt.Errorf("no data.aws_iam_policy_document.%s", doc)
	}
	sts, err := (evalBlock{b.Body, ctx}).blocks("statement")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doc, err)
	}
	var out []statement
	for _, sb := range sts {
		st := statement{sid: sb.str("sid"), effect: sb.str("effect"), conditions: map[string][]string{}}
		if st.effect == "" {
			st.effect = "Allow"
		}
		for _, forbidden := range []string{"not_actions", "not_resources"} {
			if _, ok := sb.body.Attributes[forbidden]; ok {
				st.problems.addf("%s %s: %s grants by exclusion", doc, st.sid, forbidden)
			}
		}
		acts, err := sb.attr("actions")
		if err != nil || !acts.IsWhollyKnown() || acts.IsNull() {
			return nil, fmt.Errorf("%s %s: actions must be known from the variables alone: %v", doc, st.sid, err)
		}
		for it := acts.ElementIterator(); it.Next(); {
			_, a := it.Element()
			st.actions = append(st.actions, a.AsString())
		}
		if a, ok := sb.body.Attributes["resources"]; ok {
			if st.resources, err = resourceRefs(a.Expr); err != nil {
				st.problems.addf("%s %s: %v", doc, st.sid, err)
			}
		}
		conds, err := sb.blocks("condition")
		if err != nil {
			return nil, err
		}
		for _, c := range conds {
			vals, err := c.attr("values")
			var vs []string
			if err == nil && vals.IsWhollyKnown() {
				for it := vals.ElementIterator(); it.Next(); {
					_, v := it.Element()
					vs = append(vs, v.AsString())
				}
			}
			st.conditions[c.str("variable")] = vs
		}
		out = append(out, st)
	}
	return out, nil
}

// checkIAM returns everything wrong with the module's IAM under one scenario.
func checkIAM(m *tfModule, sc tfScenario) problems {
	var ps problems
	ctx, err := m.evalContext(sc.vars)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	vars := ctx.Variables["var"]

	// Every policy document is classified, and every policy attribute of every resource is
	// one of them: no inline JSON escapes the check.
	for _, b := range m.blocksOf("data", "aws_iam_policy_document") {
		if _, ok := policyDocs[b.Labels[1]]; !ok {
			ps.addf("unclassified policy document %s: add it to policyDocs", b.Labels[1])
		}
	}
	for _, b := range m.blocksOf("resource") {
		for name, a := range b.Body.Attributes {
			if name != "policy" && name != "assume_role_policy" {
				continue
			}
			tr, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr)
			s := ""
			if ok {
				// A counted document is referred to by index: data.….lambda[0].json.
				s = countIndex.ReplaceAllString(traversalString(tr.Traversal), "")
			}
			doc, isDoc := strings.CutPrefix(s, "data.aws_iam_policy_document.")
			if doc, ok = strings.CutSuffix(doc, ".json"); !isDoc || !ok {
				ps.addf("%s.%s %s is not a data.aws_iam_policy_document", b.Labels[0], b.Labels[1], name)
			} else if _, known := policyDocs[doc]; !known {
				ps.addf("%s.%s uses unclassified document %s", b.Labels[0], b.Labels[1], doc)
			}
		}
	}

	for _, doc := range sortedKeys(policyDocs) {
		// A counted document (serverless mode's) that is not created grants nothing.
		if n, err := m.count(m.block("data", "aws_iam_policy_document", doc), ctx); err != nil {
			ps.addf("data.aws_iam_policy_document.%s: %v", doc, err)
			continue
		} else if n == 0 {
			continue
		}
		sts, err := statements(m, doc, ctx)
		if err != nil {
			ps = append(ps, err)
			continue
		}
		switch policyDocs[doc] {
		case "permissions":
			want, err := wantGrants(doc, vars)
			if err != nil {
				ps = append(ps, err)
				continue
			}
			got := map[string]map[string]bool{} // action → resources
			for _, st := range sts {
				ps = append(ps, st.problems...)
				if st.effect != "Allow" {
					ps.addf("%s %s: effect %s in a permissions policy", doc, st.sid, st.effect)
				}
				if len(st.resources) == 0 {
					ps.addf("%s %s: no resources", doc, st.sid)
				}
				for _, a := range st.actions {
					if got[a] == nil {
						got[a] = map[string]bool{}
					}
					for _, r := range st.resources {
						if got[a][r] {
							ps.addf("%s: %s granted twice on %s", doc, a, r)
						}
						got[a][r] = true
					}
					if strings.Contains(a, "*") {
						ps.addf("%s %s: wildcard action %s", doc, st.sid, a)
					}
					if rs, ok := want[a]; ok && slices.ContainsFunc(st.resources, func(r string) bool { return !slices.Contains(rs, r) }) {
						ps.addf("%s %s: %s granted on %v, want only %v", doc, st.sid, a, st.resources, rs)
					}
					if _, ok := st.conditions["kms:ViaService"]; strings.HasPrefix(a, "kms:") && !ok {
						ps.addf("%s %s: %s without a kms:ViaService condition", doc, st.sid, a)
					}
				}
			}
			for _, a := range sortedKeys(want) {
				for _, r := range want[a] {
					if !got[a][r] {
						ps.addf("%s policy lacks %s on %s, which %s", doc, a, r, whoNeeds(doc, a, r))
					}
				}
			}
			for _, a := range sortedKeys(got) {
				if _, ok := want[a]; !ok {
					ps.addf("%s policy grants %s, which neither the code nor the AWS services acting for it call", doc, a)
				}
			}
		case "trust":
			for _, st := range sts {
				for _, a := range st.actions {
					if a != "sts:AssumeRole" && a != "sts:AssumeRoleWithWebIdentity" {
						ps.addf("%s: trust policy grants %s", doc, a)
					}
					if a != "sts:AssumeRoleWithWebIdentity" {
						continue
					}
					// Without a sub condition, every service account of the cluster could
					// assume the role.
					sub, aud := false, false
					for k, vs := range st.conditions {
						sub = sub || strings.HasSuffix(k, ":sub") && len(vs) > 0 && !slices.ContainsFunc(vs, func(v string) bool {
							return !strings.HasPrefix(v, "system:serviceaccount:") || strings.Contains(v, "*")
						})
						aud = aud || strings.HasSuffix(k, ":aud") && slices.Equal(vs, []string{"sts.amazonaws.com"})
					}
					if !sub || !aud {
						ps.addf("%s %s: web identity trust must pin :sub to named service accounts and :aud to sts.amazonaws.com", doc, st.sid)
					}
				}
			}
		case "deny":
			for _, st := range sts {
				if st.effect != "Deny" {
					ps.addf("%s %s: effect %s; this document may only deny", doc, st.sid, st.effect)
				}
			}
		}
	}
	return ps
}

func TestIAMPoliciesGrantExactlyWhatTheCodeCalls(t *testing.T) {
	m := loadModule(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			requireNone(t, "infra/terraform IAM", checkIAM(m, sc))
		})
	}
}

// TestIAMDerivation pins what the derivation reads from the interfaces, so a silently empty
// derivation cannot make the policies "match".
func TestIAMDerivation(t *testing.T) {
	for _, role := range sortedKeys(roleClients) {
		for _, c := range roleClients[role] {
			if c.typ == nil {
				t.Logf("%s: %s has no AWS client interface yet; using the pending list %v", role, c.dir, c.pending)
				continue
			}
			ops, err := interfaceOps(c.typ)
			if err != nil {
				t.Fatal(err)
			}
			if len(ops) == 0 {
				t.Errorf("%s.%s has no SDK methods", c.dir, c.name)
			}
			t.Logf("%s: %s.%s calls %v", role, c.dir, c.name, ops)
		}
	}
	for _, role := range sortedKeys(roleExtraGrants) {
		for _, g := range roleExtraGrants[role] {
			if !strings.HasPrefix(g.doc, "https://docs.aws.amazon.com/") || len(g.actions) == 0 {
				t.Errorf("%s: extra grant %v on %s must cite the AWS documentation that requires it", role, g.actions, g.resource)
			}
			t.Logf("%s: AWS calls %v on %s (%s)", role, g.actions, g.resource, g.doc)
		}
	}
	// A fake interface with a non-SDK method is rejected, an SDK one is read.
	type notSDK interface {
		Put(ctx context.Context, key string) error
	}
	if _, err := interfaceOps(reflect.TypeFor[notSDK]()); err == nil {
		t.Error("interfaceOps accepted a method that is not an SDK call")
	}
	ops, err := interfaceOps(reflect.TypeFor[producer.Client]())
	if err != nil || !slices.Contains(ops, sdkOp{"kinesis", "PutRecords"}) {
		t.Errorf("producer.Client: got %v, %v; want PutRecords among the operations", ops, err)
	}
	// lambda.S3API embeds the sink's API: its method set is the sink's calls and DeleteObject.
	sink, err := interfaceOps(reflect.TypeFor[sinks3.API]())
	if err != nil {
		t.Fatal(err)
	}
	fn, err := interfaceOps(reflect.TypeFor[fnlambda.S3API]())
	if want := append(slices.Clone(sink), sdkOp{"s3", "DeleteObject"}); err != nil || len(sink) == 0 ||
		!slices.Equal(slices.SortedFunc(slices.Values(fn), compareOps), slices.SortedFunc(slices.Values(want), compareOps)) {
		t.Errorf("lambda.S3API: got %v, %v; want sinks/s3.API's %v and s3:DeleteObject", fn, err, sink)
	}
}

func compareOps(a, b sdkOp) int { return strings.Compare(a.String(), b.String()) }

// TestIAMChecksCatch breaks the policies one way at a time and requires the check to report it.
func TestIAMChecksCatch(t *testing.T) {
	lambdaOn := map[string]cty.Value{"lambda_zip": cty.StringVal("dist/kinlog-lambda-arm64.zip")}
	for _, tc := range []struct {
		name, file, old, new, want string
		vars                       map[string]cty.Value
	}{
		{name: "missing action", old: `actions   = ["kinesis:ListShards", "kinesis:PutRecords"]`, new: `actions   = ["kinesis:PutRecords"]`, want: "producer policy lacks kinesis:ListShards"},
		{name: "extra action", old: `actions   = ["kinesis:ListShards", "kinesis:PutRecords"]`, new: `actions   = ["kinesis:ListShards", "kinesis:PutRecords", "kinesis:PutRecord"]`, want: "producer policy grants kinesis:PutRecord,"},
		{name: "wildcard", old: `actions   = ["kinesis:ListShards", "kinesis:PutRecords"]`, new: `actions   = ["kinesis:*"]`, want: "wildcard action"},
		{name: "star resource", old: "resources = [aws_kinesis_stream.this.arn]\n  }\n\n  # Kinesis encrypts", new: "resources = [\"*\"]\n  }\n\n  # Kinesis encrypts", want: "does not start with a reference"},
		{name: "literal ARN", old: `resources = ["${aws_s3_bucket.archive.arn}/*"]`, new: `resources = ["arn:aws:s3:::kinlog-archive/*"]`, want: "does not start with a reference"},
		{name: "objects on bucket ARN", old: `resources = ["${aws_s3_bucket.archive.arn}/*"]`, new: `resources = [aws_s3_bucket.archive.arn]`, want: "s3:PutObject granted on"},
		{name: "CreateTable always", old: `var.allow_lease_table_creation ? ["dynamodb:CreateTable"] : [],`, new: `["dynamodb:CreateTable"],`, want: "consumer policy grants dynamodb:CreateTable"},
		{name: "CreateTable never", old: `var.allow_lease_table_creation ? ["dynamodb:CreateTable"] : [],`, new: `[],`, want: "consumer policy lacks dynamodb:CreateTable", vars: map[string]cty.Value{"allow_lease_table_creation": cty.True}},
		{name: "SSE-S3 still generates keys", old: `actions   = var.s3_sse_algorithm == "aws:kms" ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]`, new: `actions   = ["kms:Decrypt", "kms:GenerateDataKey"]`, want: "consumer policy grants kms:GenerateDataKey", vars: map[string]cty.Value{"s3_sse_algorithm": cty.StringVal("AES256")}},
		{name: "KMS without ViaService", old: "condition {\n      test     = \"StringEquals\"\n      variable = \"kms:ViaService\"\n      values   = local.kms_via_services\n    }\n  }\n}\n\nresource \"aws_iam_policy\" \"producer\"", new: "}\n}\n\nresource \"aws_iam_policy\" \"producer\"", want: "without a kms:ViaService condition"},
		{name: "inline policy", old: "policy      = data.aws_iam_policy_document.producer.json", new: `policy      = jsonencode({ Statement = [] })`, want: "is not a data.aws_iam_policy_document"},
		{name: "new document", old: "data \"aws_iam_policy_document\" \"consumer_assume\" {", new: "data \"aws_iam_policy_document\" \"other\" {}\n\ndata \"aws_iam_policy_document\" \"consumer_assume\" {", want: "unclassified policy document other"},
		{name: "trust grants more", old: `actions = ["sts:AssumeRoleWithWebIdentity"]`, new: `actions = ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]`, want: "trust policy grants sts:TagSession", vars: scenarios[3].vars},
		{name: "any service account", old: `values   = ["system:serviceaccount:${var.consumer_service_account.namespace}:${var.consumer_service_account.name}"]`, new: `values   = ["system:serviceaccount:*"]`, want: "must pin :sub", vars: scenarios[3].vars},
		{name: "not_actions", old: `actions   = ["kinesis:ListShards", "kinesis:PutRecords"]`, new: "actions   = [\"kinesis:ListShards\", \"kinesis:PutRecords\"]\n    not_actions = [\"kinesis:DeleteStream\"]", want: "grants by exclusion"},

		// Serverless mode (lambda.tf).
		{name: "lambda: no DeleteObject", file: "lambda.tf", old: `actions   = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"]`, new: `actions   = ["s3:AbortMultipartUpload", "s3:PutObject"]`, want: "lambda policy lacks s3:DeleteObject on aws_s3_bucket.archive.arn + /*", vars: lambdaOn},
		{name: "lambda: progress table is the lease table", file: "lambda.tf", old: "resources = [aws_dynamodb_table.lambda_progress[0].arn]", new: "resources = [aws_dynamodb_table.leases.arn]", want: "dynamodb:GetItem granted on [aws_dynamodb_table.leases.arn]", vars: lambdaOn},
		{name: "lambda: mapping cannot read", file: "lambda.tf", old: "      \"kinesis:GetShardIterator\",\n", new: "", want: "lambda policy lacks kinesis:GetShardIterator", vars: lambdaOn},
		{name: "lambda: enhanced fan-out", file: "lambda.tf", old: "      \"kinesis:ListShards\",\n", new: "      \"kinesis:ListShards\",\n      \"kinesis:SubscribeToShard\",\n", want: "lambda policy grants kinesis:SubscribeToShard", vars: lambdaOn},
		{name: "lambda: failed batches in the archive", file: "lambda.tf", old: `resources = ["${aws_s3_bucket.lambda_failures[0].arn}/*"]`, new: `resources = ["${aws_s3_bucket.archive.arn}/*"]`, want: "lambda: s3:PutObject granted twice", vars: lambdaOn},
		{name: "lambda: list on objects", file: "lambda.tf", old: "resources = [aws_s3_bucket.lambda_failures[0].arn]\n  }\n\n  # The function's output", new: "resources = [\"${aws_s3_bucket.lambda_failures[0].arn}/*\"]\n  }\n\n  # The function's output", want: "s3:ListBucket granted on", vars: lambdaOn},
		{name: "lambda: creates its log group", file: "lambda.tf", old: `actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]`, new: `actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]`, want: "lambda policy grants logs:CreateLogGroup", vars: lambdaOn},
		{name: "lambda: logs anywhere", file: "lambda.tf", old: `resources = ["${aws_cloudwatch_log_group.lambda[0].arn}:*"]`, new: `resources = ["*"]`, want: "does not start with a reference", vars: lambdaOn},
		{name: "lambda: no stream key", file: "lambda.tf", old: `actions   = local.s3_uses_kms ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]`, new: `actions   = local.s3_uses_kms ? ["kms:Decrypt", "kms:GenerateDataKey"] : []`, want: "lambda policy lacks kms:Decrypt", vars: map[string]cty.Value{"lambda_zip": cty.StringVal("x.zip"), "s3_sse_algorithm": cty.StringVal("AES256")}},
		{name: "lambda: inline policy", file: "lambda.tf", old: "policy      = data.aws_iam_policy_document.lambda[0].json", new: `policy      = jsonencode({ Statement = [] })`, want: "is not a data.aws_iam_policy_document", vars: lambdaOn},
		{name: "lambda: trusts more than Lambda", file: "lambda.tf", old: `actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]`, new: `actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]`, want: "trust policy grants sts:TagSession", vars: lambdaOn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := cmp.Or(tc.file, "iam.tf")
			srcs := readModule(t)
			if !strings.Contains(srcs[file], tc.old) {
				t.Fatalf("%s no longer contains %q; update the test", file, tc.old)
			}
			srcs[file] = strings.Replace(srcs[file], tc.old, tc.new, 1)
			m, err := parseModule(srcs)
			if err != nil {
				t.Fatalf("parsing the edited module: %v", err)
			}
			requireProblem(t, checkIAM(m, tfScenario{tc.name, tc.vars}), tc.want)
		})
	}
}

// TestIAMChecksFollowTheCode pretends the producer started calling DescribeStreamSummary and
// requires the check to demand the grant.
func TestIAMChecksFollowTheCode(t *testing.T) {
	type widerProducer interface {
		producer.Client
		DescribeStreamSummary(ctx context.Context, in *kinesisDescribeStreamSummaryInput) (*struct{}, error)
	}
	// A method whose input is not an SDK type is refused rather than silently skipped.
	if _, err := interfaceOps(reflect.TypeFor[widerProducer]()); err == nil {
		t.Fatal("interfaceOps accepted a non-SDK input type")
	}

	saved := roleClients["producer"]
	t.Cleanup(func() { roleClients["producer"] = saved })
	roleClients["producer"] = append(slices.Clone(saved), awsClient{dir: "producer", name: "(test)", pending: []string{"kinesis:DescribeStreamSummary"}})
	requireProblem(t, checkIAM(loadModule(t), scenarios[0]), "producer policy lacks kinesis:DescribeStreamSummary")

	// The function reading archive objects would need s3:GetObject on them, and with SSE-KMS
	// nothing more (it decrypts already).
	savedFn := roleClients["lambda"]
	t.Cleanup(func() { roleClients["lambda"] = savedFn })
	roleClients["lambda"] = append(slices.Clone(savedFn), awsClient{dir: "lambda", name: "(test)", pending: []string{"s3:GetObject"}})
	sc := tfScenario{"serverless mode", map[string]cty.Value{"lambda_zip": cty.StringVal("fn.zip")}}
	requireProblem(t, checkIAM(loadModule(t), sc), "lambda policy lacks s3:GetObject on aws_s3_bucket.archive.arn + /*")
}

type kinesisDescribeStreamSummaryInput struct{}

// awsUse is what the source scan finds in one package directory.
type awsUse struct {
	interfaces []string            // AWS client interfaces declared: SDK methods, or an embedded SDK interface
	ops        map[string][]sdkOp  // their methods' operations, by interface
	embeds     map[string]bool     // interfaces that embed another interface (their methods here are incomplete)
	embedded   map[string][]string // by interface: the module's interfaces it embeds, as "dir.Name"
	inputs     []sdkOp             // SDK inputs constructed
	declInputs map[string][]sdkOp  // the same, by top-level declaration
	takers     map[string][]string // by a module type ("dir.Name"): the package's functions ("dir.Func") with a parameter of it
	refs       map[string][]string // by top-level declaration: the module's names ("dir.Name") its code refers to, and the methods or fields it selects (".Name")
	imports    []string            // the module's packages imported, as dirs
}

func newAWSUse() *awsUse {
	return &awsUse{ops: map[string][]sdkOp{}, embeds: map[string]bool{}, embedded: map[string][]string{},
		declInputs: map[string][]sdkOp{}, takers: map[string][]string{}, refs: map[string][]string{}}
}

// modulePath reads the module path from root's go.mod.
func modulePath(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s/go.mod names no module", root)
}

// scanSources parses the non-test Go files under dir and reports, by package directory, the
// AWS client interfaces they declare, the SDK inputs they construct and the module's names
// they use. Main packages are skipped (a bench tool runs with its own credentials, not a
// role's), except dir's own when withMain: a role's command.
func scanSources(root, modPath, dir string, withMain bool) (map[string]*awsUse, error) {
	uses := map[string]*awsUse{}
	err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		return scanFile(uses, p, rel, modPath, withMain && rel == dir)
	})
	return uses, err
}

// scanPackage is scanSources for the one package in dir (not its subdirectories); nil when
// dir holds no such Go files.
func scanPackage(root, modPath, dir string) (*awsUse, error) {
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil, err
	}
	uses := map[string]*awsUse{}
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			if err := scanFile(uses, filepath.Join(root, dir, n), dir, modPath, false); err != nil {
				return nil, err
			}
		}
	}
	return uses[dir], nil
}

// scanFile adds what one file of package directory rel holds to uses[rel].
func scanFile(uses map[string]*awsUse, p, rel, modPath string, withMain bool) error {
	f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
	if err != nil {
		return err
	}
	if f.Name.Name == "main" && !withMain {
		return nil
	}
	u := uses[rel]
	if u == nil {
		u = newAWSUse()
		uses[rel] = u
	}
	imports := map[string]string{} // local name → path
	for _, im := range f.Imports {
		ip, _ := strconv.Unquote(im.Path.Value)
		name := path.Base(ip)
		if im.Name != nil {
			name = im.Name.Name
		}
		imports[name] = ip
		if d, ok := strings.CutPrefix(ip, modPath+"/"); ok && !slices.Contains(u.imports, d) {
			u.imports = append(u.imports, d)
		}
	}
	awsPkg := func(e ast.Expr, prefix string) (string, string, bool) {
		if st, ok := e.(*ast.StarExpr); ok {
			e = st.X
		}
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", "", false
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok || !strings.HasPrefix(imports[id.Name], prefix) {
			return "", "", false
		}
		return imports[id.Name], sel.Sel.Name, true
	}
	// moduleName names a type expression of the module's own as "dir.Name": a name of this
	// package or of an imported package of the module.
	moduleName := func(e ast.Expr) (string, bool) {
		for {
			switch x := e.(type) {
			case *ast.StarExpr:
				e = x.X
				continue
			case *ast.ArrayType:
				e = x.Elt
				continue
			case *ast.Ellipsis:
				e = x.Elt
				continue
			case *ast.Ident:
				return rel + "." + x.Name, ast.IsExported(x.Name)
			case *ast.SelectorExpr:
				id, ok := x.X.(*ast.Ident)
				if !ok {
					return "", false
				}
				d, ok := strings.CutPrefix(imports[id.Name], modPath+"/")
				return d + "." + x.Sel.Name, ok
			}
			return "", false
		}
	}
	for _, decl := range f.Decls {
		declName := ""
		switch d := decl.(type) {
		case *ast.FuncDecl:
			declName = d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				if recv, _ := moduleName(d.Recv.List[0].Type); recv != "" {
					_, typ, _ := strings.Cut(recv, ".")
					declName = typ + "." + declName
				}
			}
			for _, prm := range d.Type.Params.List {
				if t, ok := moduleName(prm.Type); ok && !slices.Contains(u.takers[t], rel+"."+declName) {
					u.takers[t] = append(u.takers[t], rel+"."+declName)
				}
			}
		case *ast.GenDecl:
			if d.Tok == token.IMPORT {
				continue
			}
			switch sp := d.Specs[0].(type) {
			case *ast.TypeSpec:
				declName = sp.Name.Name
			case *ast.ValueSpec:
				declName = sp.Names[0].Name
			}
		}
		refs := map[string]bool{}
		var visit func(n ast.Node) bool
		visit = func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok {
					if d, ok := strings.CutPrefix(imports[id.Name], modPath+"/"); ok {
						refs[d+"."+x.Sel.Name] = true
						return false
					}
				}
				refs["."+x.Sel.Name] = true // a field or method: its type is unknown here
				ast.Inspect(x.X, visit)
				return false
			case *ast.Ident:
				if ast.IsExported(x.Name) {
					refs[rel+"."+x.Name] = true
				}
			case *ast.TypeSpec:
				it, ok := x.Type.(*ast.InterfaceType)
				if !ok {
					return true
				}
				isAWS := false
				for _, fld := range it.Methods.List {
					if ft, ok := fld.Type.(*ast.FuncType); ok {
						for _, prm := range ft.Params.List {
							ip, name, a := awsPkg(prm.Type, sdkServicePrefix)
							if op, isInput := strings.CutSuffix(name, "Input"); a && isInput {
								u.ops[x.Name.Name] = append(u.ops[x.Name.Name], sdkOp{path.Base(ip), op})
							}
							isAWS = isAWS || a
						}
						continue
					}
					u.embeds[x.Name.Name] = true
					if _, _, a := awsPkg(fld.Type, "github.com/aws/aws-sdk-go-v2/"); a {
						isAWS = true // an embedded SDK interface, e.g. manager.UploadAPIClient
					} else if m, ok := moduleName(fld.Type); ok {
						u.embedded[x.Name.Name] = append(u.embedded[x.Name.Name], m)
					}
				}
				if isAWS {
					u.interfaces = append(u.interfaces, x.Name.Name)
				}
			case *ast.CompositeLit:
				if ip, name, ok := awsPkg(x.Type, sdkServicePrefix); ok {
					if op, ok := strings.CutSuffix(name, "Input"); ok && !strings.Contains(strings.TrimPrefix(ip, sdkServicePrefix), "/") {
						u.inputs = append(u.inputs, sdkOp{path.Base(ip), op})
						u.declInputs[declName] = append(u.declInputs[declName], sdkOp{path.Base(ip), op})
					}
				}
			}
			return true
		}
		ast.Inspect(decl, visit)
		for _, r := range sortedKeys(refs) {
			if !slices.Contains(u.refs[declName], r) {
				u.refs[declName] = append(u.refs[declName], r)
			}
		}
	}
	return nil
}

// roleCode is what runs under one role, for checkRoleSources.
type roleCode struct {
	role    string
	clients []awsClient
	dirs    []string
	command string
	unused  []unusedClient
}

func roleCodeOf(role string) roleCode {
	return roleCode{role: role, clients: roleClients[role], dirs: roleDirs[role], command: roleCommands[role], unused: roleUnused[role]}
}

// underAny reports whether package dir d lies in one of dirs.
func underAny(d string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(r string) bool { return d == r || strings.HasPrefix(d, r+"/") })
}

// checkRoleSources makes a role's derivation complete. Every AWS client interface its code
// declares is listed in its clients, embedded in a listed one (whose method set reflection
// reads whole), or listed as unused; every SDK input its code builds is an operation the
// derivation has. Every package of the module its command links in that calls AWS is in its
// dirs, or has only unused AWS client interfaces; and no code the command links in names an
// unused interface or a function that takes one, outside the interface's own package.
func checkRoleSources(root, modPath string, rc roleCode) problems {
	var ps problems
	scanned := map[string]*awsUse{} // by package dir; nil: no Go files
	inRole := map[string]bool{}
	for _, dir := range rc.dirs {
		if _, err := os.Stat(filepath.Join(root, dir)); err != nil {
			ps.addf("%s role: directory %s: %v", rc.role, dir, err)
			continue
		}
		uses, err := scanSources(root, modPath, dir, dir == rc.command)
		if err != nil {
			ps.addf("scanning %s: %v", dir, err)
			continue
		}
		for d, u := range uses {
			scanned[d], inRole[d] = u, true
		}
	}
	scan := func(d string) *awsUse {
		if u, ok := scanned[d]; ok {
			return u
		}
		u, err := scanPackage(root, modPath, d)
		if err != nil {
			ps.addf("scanning %s: %v", d, err)
		}
		scanned[d] = u
		return u
	}

	// The packages the command links in, and who imports them first.
	reach := map[string]string{}
	if rc.command != "" {
		reach[rc.command] = ""
		for queue := []string{rc.command}; len(queue) > 0; queue = queue[1:] {
			if u := scan(queue[0]); u != nil {
				for _, imp := range u.imports {
					if _, seen := reach[imp]; !seen {
						reach[imp] = queue[0]
						queue = append(queue, imp)
					}
				}
			}
		}
	}

	// An interface that embeds an AWS client interface of the module is one too.
	isAWS := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for _, d := range sortedKeys(scanned) {
			u := scanned[d]
			if u == nil {
				continue
			}
			for _, n := range u.interfaces {
				if !isAWS[d+"."+n] {
					isAWS[d+"."+n], changed = true, true
				}
			}
			for _, n := range sortedKeys(u.embedded) {
				for _, e := range u.embedded[n] {
					ed, _, _ := strings.Cut(e, ".")
					if eu := scan(ed); eu != nil && !isAWS[d+"."+n] && (isAWS[e] || slices.Contains(eu.interfaces, strings.TrimPrefix(e, ed+"."))) {
						isAWS[d+"."+n], changed = true, true
					}
				}
			}
		}
	}
	interfacesOf := func(d string) []string {
		var out []string
		for _, k := range sortedKeys(isAWS) {
			if n, ok := strings.CutPrefix(k, d+"."); ok && !strings.Contains(n, ".") {
				out = append(out, n)
			}
		}
		return out
	}

	listed := map[string]awsClient{}
	covered := map[string]bool{} // embedded, at any depth, in a listed interface read by reflection
	var cover func(k string)
	cover = func(k string) {
		d, n, _ := strings.Cut(k, ".")
		if u := scan(d); u != nil {
			for _, e := range u.embedded[n] {
				if !covered[e] {
					covered[e] = true
					cover(e)
				}
			}
		}
	}
	for _, c := range rc.clients {
		listed[c.dir+"."+c.name] = c
		if c.typ != nil {
			cover(c.dir + "." + c.name)
		}
	}
	unused := map[string]unusedClient{}
	forbidden := map[string]string{} // name → the unused interface it gives away
	exempt := map[string]bool{}      // "dir.Decl" of the unused clients' own code
	for _, uc := range rc.unused {
		k := uc.dir + "." + uc.name
		unused[k] = uc
		if !isAWS[k] {
			ps.addf("roleUnused[%q] lists %s, which is not an AWS client interface the role's code links in: remove it", rc.role, k)
		}
		forbidden[k], exempt[k] = k, true
		for _, d := range sortedKeys(scanned) {
			u := scanned[d]
			if u == nil {
				continue
			}
			for _, fn := range u.takers[k] {
				forbidden[fn], exempt[fn] = k, true
				if _, typ, method := strings.Cut(strings.TrimPrefix(fn, d+"."), "."); method {
					forbidden["."+typ] = k // a method: callers select it by name
				}
			}
		}
		// In its own package: the types that hold such a client, and their methods.
		if u := scanned[uc.dir]; u != nil {
			for _, decl := range sortedKeys(u.refs) {
				if slices.Contains(u.refs[decl], k) && !strings.Contains(decl, ".") {
					exempt[uc.dir+"."+decl] = true
					for _, m := range slices.Concat(sortedKeys(u.refs), sortedKeys(u.declInputs)) {
						if strings.HasPrefix(m, decl+".") {
							exempt[uc.dir+"."+m] = true
						}
					}
				}
			}
		}
	}

	ops, err := roleOps(rc.role)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	derived := map[sdkOp]bool{}
	for _, o := range ops {
		derived[o] = true
	}
	for _, pkg := range sortedKeys(inRole) {
		u := scanned[pkg]
		for _, name := range interfacesOf(pkg) {
			k := pkg + "." + name
			c, ok := listed[k]
			switch {
			case ok && c.typ == nil:
				// Listed by hand: the list must be the interface's methods.
				var found []string
				for _, o := range u.ops[name] {
					found = append(found, o.String())
				}
				if u.embeds[name] || !slices.Equal(slices.Sorted(slices.Values(found)), slices.Sorted(slices.Values(c.pending))) {
					ps.addf("%s calls %v (embeds an interface: %v), but roleClients lists %v: replace the pending list with reflect.TypeFor[%s]()", k, found, u.embeds[name], c.pending, name)
				}
			case ok, covered[k]:
			case unused[k].name != "":
			default:
				ps.addf("%s declares the AWS client interface %s, which roleClients[%q] does not list: add it (by reflect.TypeFor) so the %s policy follows it", pkg, name, rc.role, rc.role)
			}
		}
		for _, decl := range sortedKeys(u.declInputs) {
			if exempt[pkg+"."+decl] {
				continue // an unused client's code: never runs under the role
			}
			for _, o := range u.declInputs[decl] {
				if !derived[o] {
					ps.addf("%s builds a %s input, but no listed interface of the %s role has that operation", pkg, o, rc.role)
				}
			}
		}
	}
	for _, pkg := range sortedKeys(reach) {
		u := scanned[pkg]
		if u == nil {
			continue
		}
		if !inRole[pkg] {
			ifs := interfacesOf(pkg)
			for _, name := range ifs {
				if unused[pkg+"."+name].name == "" {
					ps.addf("%s links in %s (imported by %s), whose AWS client interface %s then runs under the %s role: add %s to roleDirs[%q], or list %s in roleUnused if the role never gives it a client", rc.command, pkg, reach[pkg], name, rc.role, pkg, rc.role, name)
				}
			}
			if len(ifs) == 0 && len(u.inputs) > 0 {
				ps.addf("%s links in %s (imported by %s), which builds SDK inputs %v outside an AWS client interface", rc.command, pkg, reach[pkg], u.inputs)
			}
		}
	}
	// Nothing the role runs gives an unused interface a client.
	code := maps.Clone(inRole)
	for pkg := range reach {
		code[pkg] = true
	}
	for _, pkg := range sortedKeys(code) {
		u := scanned[pkg]
		if u == nil {
			continue
		}
		for _, decl := range sortedKeys(u.refs) {
			for _, r := range u.refs[decl] {
				k, ok := forbidden[r]
				if !ok || strings.HasPrefix(k, pkg+".") {
					continue // the interface's own package: its uses go through the takers
				}
				ps.addf("%s.%s uses %s, so %s gets a client under the %s role (roleUnused says: %s): list it in roleClients instead", pkg, decl, r, k, rc.role, unused[k].why)
			}
		}
	}
	return ps
}

// TestAWSClientInterfacesAreListed makes the derivation complete for every role
// (checkRoleSources).
func TestAWSClientInterfacesAreListed(t *testing.T) {
	root := repoRoot(t)
	modPath, err := modulePath(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range sortedKeys(roleDirs) {
		t.Run(role, func(t *testing.T) {
			requireNone(t, role+" role", checkRoleSources(root, modPath, roleCodeOf(role)))
		})
	}
}

// TestRoleDirsAreDisjoint keeps each role's code its own: a directory (or one inside it)
// belongs to two roles only where sharedDirs says so. lambda/ is not consumer code, and
// consumer/ and checkpoint/ are not the function's.
func TestRoleDirsAreDisjoint(t *testing.T) {
	sharedDirs := map[string][]string{"sinks": {"consumer", "lambda"}} // the S3 sink
	roles := sortedKeys(roleDirs)
	for i, a := range roles {
		for _, b := range roles[i+1:] {
			for _, da := range roleDirs[a] {
				for _, db := range roleDirs[b] {
					if !underAny(da, []string{db}) && !underAny(db, []string{da}) {
						continue
					}
					if sh := sharedDirs[min(da, db)]; !slices.Contains(sh, a) || !slices.Contains(sh, b) {
						t.Errorf("roles %s and %s share %s / %s: code runs under one role unless sharedDirs says otherwise", a, b, da, db)
					}
				}
			}
		}
	}
	if underAny("lambda", roleDirs["consumer"]) || underAny("consumer", roleDirs["lambda"]) || underAny("checkpoint", roleDirs["lambda"]) {
		t.Errorf("roleDirs mixes the worker's and the function's code: consumer %v, lambda %v", roleDirs["consumer"], roleDirs["lambda"])
	}
}

// TestScanSourcesFindsInterfaces runs the scanner on a small tree written for the test.
func TestScanSourcesFindsInterfaces(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sinks", "s3")
	write := func(name, src string) {
		t.Helper()
		if err := osWriteFile(filepath.Join(dir, name), src); err != nil {
			t.Fatal(err)
		}
	}
	write("client.go", `package s3
import (
	"context"
	s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
)
type API interface {
	HeadObject(ctx context.Context, in *s3sdk.HeadObjectInput, optFns ...func(*s3sdk.Options)) (*s3sdk.HeadObjectOutput, error)
}
type Uploader interface { manager.UploadAPIClient }
type Clock interface { Now() int64 }
func get() any { return &s3sdk.GetObjectInput{} }
`)
	write("x_test.go", "package s3\ntype Ignored interface{}\n")
	if err := osWriteFile(filepath.Join(root, "sinks", "tool", "main.go"), "package main\nimport k \"github.com/aws/aws-sdk-go-v2/service/kinesis\"\nvar _ = &k.GetRecordsInput{}\n"); err != nil {
		t.Fatal(err)
	}
	// A command's own main package is scanned when asked for.
	if err := osWriteFile(filepath.Join(root, "cmd", "fn", "main.go"), "package main\nimport k \"github.com/aws/aws-sdk-go-v2/service/kinesis\"\nvar _ = &k.ListShardsInput{}\n"); err != nil {
		t.Fatal(err)
	}
	// An interface that embeds one of the module's, and a function that takes it.
	if err := osWriteFile(filepath.Join(root, "fn", "api.go"), `package fn
import (
	"context"
	s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"
	sink "example.com/m/sinks/s3"
)
type S3API interface {
	sink.API
	DeleteObject(context.Context, *s3sdk.DeleteObjectInput, ...func(*s3sdk.Options)) (*s3sdk.DeleteObjectOutput, error)
}
func New(c S3API) {}
func Use() { New(nil); _ = sink.API(nil) }
`); err != nil {
		t.Fatal(err)
	}
	uses, err := scanSources(root, "example.com/m", "sinks", false)
	if err != nil {
		t.Fatal(err)
	}
	if tool := uses["sinks/tool"]; tool != nil && len(tool.inputs) > 0 {
		t.Errorf("scan counted the SDK inputs of a main package: %v", tool.inputs)
	}
	u := uses["sinks/s3"]
	if u == nil || !slices.Equal(u.interfaces, []string{"API", "Uploader"}) || !slices.Equal(u.inputs, []sdkOp{{"s3", "GetObject"}}) ||
		!slices.Equal(u.ops["API"], []sdkOp{{"s3", "HeadObject"}}) || !u.embeds["Uploader"] || u.embeds["API"] ||
		!slices.Equal(u.declInputs["get"], []sdkOp{{"s3", "GetObject"}}) {
		t.Fatalf("scan found %+v; want interfaces [API Uploader] (API calling s3:HeadObject, Uploader embedding), and input s3:GetObject in get", u)
	}
	cmd, err := scanSources(root, "example.com/m", "cmd/fn", true)
	if err != nil || cmd["cmd/fn"] == nil || !slices.Equal(cmd["cmd/fn"].inputs, []sdkOp{{"kinesis", "ListShards"}}) {
		t.Errorf("scanning a command with its main package: %+v, %v; want input kinesis:ListShards", cmd["cmd/fn"], err)
	}
	fn, err := scanPackage(root, "example.com/m", "fn")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fn.interfaces, []string{"S3API"}) || !slices.Equal(fn.embedded["S3API"], []string{"sinks/s3.API"}) || !fn.embeds["S3API"] ||
		!slices.Equal(fn.imports, []string{"sinks/s3"}) || !slices.Equal(fn.takers["fn.S3API"], []string{"fn.New"}) ||
		!slices.Contains(fn.refs["Use"], "fn.New") || !slices.Contains(fn.refs["Use"], "sinks/s3.API") {
		t.Errorf("scan of fn found %+v; want S3API embedding sinks/s3.API, New taking it, Use referring to both", fn)
	}
}

// TestRoleSourceChecksCatch runs checkRoleSources on a small module written for the test,
// broken one way at a time.
func TestRoleSourceChecksCatch(t *testing.T) {
	const mod = "example.com/m"
	files := map[string]string{
		"go.mod": "module " + mod + "\n",
		"sink/api.go": `package sink
import ("context"; s3sdk "github.com/aws/aws-sdk-go-v2/service/s3")
type API interface {
	PutObject(context.Context, *s3sdk.PutObjectInput, ...func(*s3sdk.Options)) (*s3sdk.PutObjectOutput, error)
}
func Put(c API) { c.PutObject(nil, &s3sdk.PutObjectInput{}) }
`,
		"fn/api.go": `package fn
import ("context"; s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"; ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"; "example.com/m/sink"; "example.com/m/reader")
type S3API interface {
	sink.API
	DeleteObject(context.Context, *s3sdk.DeleteObjectInput, ...func(*s3sdk.Options)) (*s3sdk.DeleteObjectOutput, error)
}
type TableAPI interface {
	CreateTable(context.Context, *ddb.CreateTableInput, ...func(*ddb.Options)) (*ddb.CreateTableOutput, error)
}
func CreateTable(c TableAPI) { c.CreateTable(nil, &ddb.CreateTableInput{}) }
type F struct{}
func (f *F) Replay(c TableAPI) { h := holder{c}; h.describe() }
type holder struct{ c TableAPI }
func (h holder) describe() { _ = &ddb.DescribeTableInput{} }
var _ = reader.Record{}
`,
		"reader/reader.go": `package reader
import ("context"; k "github.com/aws/aws-sdk-go-v2/service/kinesis")
type Record struct{}
type KinesisAPI interface {
	GetRecords(context.Context, *k.GetRecordsInput, ...func(*k.Options)) (*k.GetRecordsOutput, error)
}
func New(c KinesisAPI) {}
`,
		"cmd/fn/main.go": `package main
import ("example.com/m/fn"; _ "example.com/m/sink")
func main() { _ = fn.S3API(nil) }
`,
	}
	// The tree's fn.S3API stands for lambda.S3API, read by reflection.
	good := roleCode{
		role:    "lambda-test",
		clients: []awsClient{{dir: "fn", name: "S3API", typ: reflect.TypeFor[fnlambda.S3API]()}},
		dirs:    []string{"fn", "sink", "cmd/fn"},
		command: "cmd/fn",
		unused: []unusedClient{
			{dir: "fn", name: "TableAPI", why: "tests only"},
			{dir: "reader", name: "KinesisAPI", why: "Record only"},
		},
	}
	for _, tc := range []struct {
		name string
		file string // edited file, "" for none
		old  string
		new  string
		edit func(*roleCode)
		want string // "" for no problem
	}{
		{name: "complete"},
		{name: "embedding interface listed by hand", edit: func(rc *roleCode) {
			rc.clients = []awsClient{{dir: "fn", name: "S3API", pending: []string{"s3:DeleteObject"}}}
		}, want: "replace the pending list"},
		{name: "unlisted interface", edit: func(rc *roleCode) { rc.unused = rc.unused[1:] }, want: "declares the AWS client interface TableAPI"},
		{name: "stale unused entry", edit: func(rc *roleCode) {
			rc.unused = append(rc.unused, unusedClient{dir: "fn", name: "Gone", why: "-"})
		}, want: "roleUnused[\"lambda-test\"] lists fn.Gone"},
		{name: "linked-in package with a client", edit: func(rc *roleCode) { rc.unused = rc.unused[:1] }, want: "cmd/fn links in reader (imported by fn), whose AWS client interface KinesisAPI"},
		{name: "unused client used", file: "cmd/fn/main.go", old: "func main() { _ = fn.S3API(nil) }", new: "func main() { _ = fn.S3API(nil); fn.CreateTable(nil) }", want: "cmd/fn.main uses fn.CreateTable, so fn.TableAPI gets a client"},
		{name: "unused client used by method", file: "cmd/fn/main.go", old: "func main() { _ = fn.S3API(nil) }", new: "func main() { _ = fn.S3API(nil); var f fn.F; f.Replay(nil) }", want: "cmd/fn.main uses .Replay, so fn.TableAPI gets a client"},
		{name: "unused client used elsewhere", file: "fn/api.go", old: "var _ = reader.Record{}", new: "var _ = reader.Record{}\nfunc Read() { reader.New(nil) }", want: "fn.Read uses reader.New, so reader.KinesisAPI gets a client"},
		{name: "input outside the interfaces", file: "sink/api.go", old: "func Put(c API) { c.PutObject(nil, &s3sdk.PutObjectInput{}) }", new: "func Put(c API) { c.PutObject(nil, &s3sdk.PutObjectInput{}); _ = &s3sdk.GetObjectInput{} }", want: "sink builds a s3:GetObject input"},
		{name: "missing directory", edit: func(rc *roleCode) { rc.dirs = append(rc.dirs, "gone") }, want: "directory gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, src := range files {
				if name == tc.file {
					if !strings.Contains(src, tc.old) {
						t.Fatalf("%s no longer contains %q", name, tc.old)
					}
					src = strings.Replace(src, tc.old, tc.new, 1)
				}
				if err := osWriteFile(filepath.Join(root, name), src); err != nil {
					t.Fatal(err)
				}
			}
			rc := good
			rc.clients, rc.dirs, rc.unused = slices.Clone(good.clients), slices.Clone(good.dirs), slices.Clone(good.unused)
			if tc.edit != nil {
				tc.edit(&rc)
			}
			saved := roleClients[rc.role]
			roleClients[rc.role] = rc.clients
			t.Cleanup(func() {
				if saved == nil {
					delete(roleClients, rc.role)
				} else {
					roleClients[rc.role] = saved
				}
			})
			ps := checkRoleSources(root, mod, rc)
			if tc.want == "" {
				requireNone(t, "fake tree", ps)
				return
			}
			requireProblem(t, ps, tc.want)
		})
	}
}

// TestIRSATrustMatchesServiceAccount checks that the consumer role trusts exactly the
// ServiceAccount infra/k8s runs the workers as, and that the ServiceAccount's role-arn
// annotation names the role the module creates.
func TestIRSATrustMatchesServiceAccount(t *testing.T) {
	ms := loadManifests(t)
	sa := ms.serviceAccount.Metadata
	m := loadModule(t)
	provider := "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
	ctx, err := m.evalContext(map[string]cty.Value{"eks_oidc_provider_arn": cty.StringVal(provider)})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := statements(m, "consumer_assume", ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 {
		t.Fatalf("consumer_assume has %d statements with only IRSA configured, want 1", len(sts))
	}
	wantSub := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	if got := sts[0].conditions["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub"]; !slices.Equal(got, []string{wantSub}) {
		t.Errorf("consumer role trusts %v, want [%s] (the ServiceAccount in infra/k8s); conditions: %v", got, wantSub, sts[0].conditions)
	}

	role, err := m.resource("aws_iam_role", "consumer", ctx)
	if err != nil {
		t.Fatal(err)
	}
	arn := sa.Annotations["eks.amazonaws.com/role-arn"]
	if _, name, _ := strings.Cut(arn, ":role/"); name != role.str("name") {
		t.Errorf("ServiceAccount role-arn %s does not name the consumer role %q", arn, role.str("name"))
	}

	// Without a provider nothing is trusted and no role is made.
	ctx, err = m.evalContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	if sts, err := statements(m, "consumer_assume", ctx); err != nil || len(sts) != 0 {
		t.Errorf("consumer_assume with defaults: %d statements, %v; want none", len(sts), err)
	}
}
