package deploytest

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
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
// the reader role for `kinlog query`.
var roleClients = map[string][]awsClient{
	"producer": {
		{dir: "producer", name: "Client", typ: reflect.TypeFor[producer.Client]()},
	},
	"consumer": {
		{dir: "consumer", name: "KinesisAPI", typ: reflect.TypeFor[consumer.KinesisAPI]()},
		{dir: "checkpoint/dynamodb", name: "API", typ: reflect.TypeFor[ddbstore.API]()},
		{dir: "sinks/s3", name: "API", typ: reflect.TypeFor[sinks3.API]()},
	},
	"reader": {
		{dir: "query", name: "S3API", typ: reflect.TypeFor[query.S3API]()},
	},
}

// roleDirs are the source trees whose code runs under each role.
var roleDirs = map[string][]string{
	"producer": {"producer"},
	"consumer": {"consumer", "checkpoint", "sinks"},
	"reader":   {"query"},
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

// wantActions derives the exact action set a role's policy must grant, for the given values
// of the variables that change it.
func wantActions(role string, vars cty.Value) (map[string]bool, error) {
	ops, err := roleOps(role)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	has := func(service string, names []string) bool {
		return slices.ContainsFunc(ops, func(o sdkOp) bool { return o.service == service && slices.Contains(names, o.op) })
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
			want[a] = true
		}
	}
	// The stream is always KMS-encrypted: writers generate data keys, readers decrypt.
	if has("kinesis", kinesisWrites) {
		want["kms:GenerateDataKey"] = true
	}
	if has("kinesis", kinesisReads) {
		want["kms:Decrypt"] = true
	}
	if vars.GetAttr("s3_sse_algorithm").AsString() == "aws:kms" {
		if has("s3", s3NewData) {
			want["kms:GenerateDataKey"] = true
		}
		if has("s3", s3ReadData) {
			want["kms:Decrypt"] = true
		}
	}
	return want, nil
}

// resourceFor names the one resource (a reference plus a literal suffix) an action may be
// granted on.
func resourceFor(action string) string {
	svc, op, _ := strings.Cut(action, ":")
	switch svc {
	case "kinesis":
		if slices.Contains([]string{"SubscribeToShard", "DescribeStreamConsumer"}, op) {
			return "aws_kinesis_stream.this.arn + /consumer/*"
		}
		return "aws_kinesis_stream.this.arn"
	case "dynamodb":
		return "aws_dynamodb_table.leases.arn"
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
				s = traversalString(tr.Traversal)
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
		sts, err := statements(m, doc, ctx)
		if err != nil {
			ps = append(ps, err)
			continue
		}
		switch policyDocs[doc] {
		case "permissions":
			want, err := wantActions(doc, vars)
			if err != nil {
				ps = append(ps, err)
				continue
			}
			got := map[string]bool{}
			for _, st := range sts {
				ps = append(ps, st.problems...)
				if st.effect != "Allow" {
					ps.addf("%s %s: effect %s in a permissions policy", doc, st.sid, st.effect)
				}
				if len(st.resources) == 0 {
					ps.addf("%s %s: no resources", doc, st.sid)
				}
				for _, a := range st.actions {
					if got[a] {
						ps.addf("%s: %s granted twice", doc, a)
					}
					got[a] = true
					if strings.Contains(a, "*") {
						ps.addf("%s %s: wildcard action %s", doc, st.sid, a)
					}
					if r := resourceFor(a); !slices.Equal(st.resources, []string{r}) {
						ps.addf("%s %s: %s granted on %v, want exactly [%s]", doc, st.sid, a, st.resources, r)
					}
					if _, ok := st.conditions["kms:ViaService"]; strings.HasPrefix(a, "kms:") && !ok {
						ps.addf("%s %s: %s without a kms:ViaService condition", doc, st.sid, a)
					}
				}
			}
			for _, a := range sortedKeys(want) {
				if !got[a] {
					ps.addf("%s policy lacks %s, which the code needs", doc, a)
				}
			}
			for _, a := range sortedKeys(got) {
				if !want[a] {
					ps.addf("%s policy grants %s, which the code does not call", doc, a)
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
}

// TestIAMChecksCatch breaks the policies one way at a time and requires the check to report it.
func TestIAMChecksCatch(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
		vars                 map[string]cty.Value
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcs := readModule(t)
			if !strings.Contains(srcs["iam.tf"], tc.old) {
				t.Fatalf("iam.tf no longer contains %q; update the test", tc.old)
			}
			srcs["iam.tf"] = strings.Replace(srcs["iam.tf"], tc.old, tc.new, 1)
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
}

type kinesisDescribeStreamSummaryInput struct{}

// awsUse is what the source scan finds in one package directory.
type awsUse struct {
	interfaces []string           // AWS client interfaces declared
	ops        map[string][]sdkOp // their methods' operations, by interface
	embeds     map[string]bool    // interfaces that embed an SDK interface (ops incomplete)
	inputs     []sdkOp            // SDK inputs constructed
}

// scanSources parses the non-test Go files under dir and reports the AWS client interfaces
// they declare and the SDK inputs they construct, by package directory.
func scanSources(root, dir string) (map[string]*awsUse, error) {
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
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil // a command (e.g. a bench tool) runs with its own credentials, not the role's
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		u := uses[rel]
		if u == nil {
			u = &awsUse{ops: map[string][]sdkOp{}, embeds: map[string]bool{}}
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
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
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
					} else if _, _, a := awsPkg(fld.Type, "github.com/aws/aws-sdk-go-v2/"); a {
						isAWS = true // an embedded SDK interface, e.g. manager.UploadAPIClient
						u.embeds[x.Name.Name] = true
					}
				}
				if isAWS {
					u.interfaces = append(u.interfaces, x.Name.Name)
				}
			case *ast.CompositeLit:
				if ip, name, ok := awsPkg(x.Type, sdkServicePrefix); ok {
					if op, ok := strings.CutSuffix(name, "Input"); ok && !strings.Contains(strings.TrimPrefix(ip, sdkServicePrefix), "/") {
						u.inputs = append(u.inputs, sdkOp{path.Base(ip), op})
					}
				}
			}
			return true
		})
		return nil
	})
	return uses, err
}

// TestAWSClientInterfacesAreListed makes the derivation complete: every AWS client interface
// in the code is listed in roleClients, and every SDK input the code builds is an operation
// its role is derived to call.
func TestAWSClientInterfacesAreListed(t *testing.T) {
	root := repoRoot(t)
	for _, role := range sortedKeys(roleDirs) {
		listed := map[string]awsClient{}
		for _, c := range roleClients[role] {
			listed[c.dir+"."+c.name] = c
		}
		ops, err := roleOps(role)
		if err != nil {
			t.Fatal(err)
		}
		derived := map[sdkOp]bool{}
		for _, o := range ops {
			derived[o] = true
		}
		for _, dir := range roleDirs[role] {
			uses, err := scanSources(root, dir)
			if err != nil {
				t.Fatalf("scanning %s: %v", dir, err)
			}
			for _, pkg := range slices.Sorted(maps.Keys(uses)) {
				u := uses[pkg]
				for _, name := range u.interfaces {
					c, ok := listed[pkg+"."+name]
					if !ok {
						t.Errorf("%s declares the AWS client interface %s, which roleClients[%q] does not list: add it (by reflect.TypeFor) so the %s policy follows it", pkg, name, role, role)
						continue
					}
					if c.typ != nil {
						continue
					}
					// Listed by hand: the list must be the interface's methods.
					var found []string
					for _, o := range u.ops[name] {
						found = append(found, o.String())
					}
					if u.embeds[name] || !slices.Equal(slices.Sorted(slices.Values(found)), slices.Sorted(slices.Values(c.pending))) {
						t.Errorf("%s.%s calls %v (embeds an SDK interface: %v), but roleClients lists %v: replace the pending list with reflect.TypeFor[%s]()", pkg, name, found, u.embeds[name], c.pending, name)
					}
				}
				for _, o := range u.inputs {
					if !derived[o] {
						t.Errorf("%s builds a %s input, but no listed interface of the %s role has that operation", pkg, o, role)
					}
				}
			}
		}
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
	uses, err := scanSources(root, "sinks")
	if err != nil {
		t.Fatal(err)
	}
	if tool := uses["sinks/tool"]; tool != nil && len(tool.inputs) > 0 {
		t.Errorf("scan counted the SDK inputs of a main package: %v", tool.inputs)
	}
	u := uses["sinks/s3"]
	if u == nil || !slices.Equal(u.interfaces, []string{"API", "Uploader"}) || !slices.Equal(u.inputs, []sdkOp{{"s3", "GetObject"}}) ||
		!slices.Equal(u.ops["API"], []sdkOp{{"s3", "HeadObject"}}) || !u.embeds["Uploader"] || u.embeds["API"] {
		t.Fatalf("scan found %+v; want interfaces [API Uploader] (API calling s3:HeadObject, Uploader embedding), and input s3:GetObject", u)
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
