package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/kinlog/kinlog/sinks/prefix"
)

// tfModule is infra/terraform, parsed. Expressions are evaluated by the tests themselves:
// variables get their defaults (or a test's overrides), locals are computed from them, and
// resource attributes are unknown unless a test supplies a stand-in (fakeResources).
type tfModule struct {
	blocks []*hclsyntax.Block // top-level blocks of every .tf file
	vars   map[string]tfVar
}

type tfVar struct {
	block *hclsyntax.Block
	ty    cty.Type
	def   cty.Value
	dflts *typeexpr.Defaults
}

// readModule reads the .tf files of infra/terraform into name → source.
func readModule(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "infra", "terraform", "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in infra/terraform: %v", err)
	}
	srcs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		srcs[filepath.Base(f)] = string(b)
	}
	return srcs
}

// parseModule parses the sources; syntax errors and invalid variable declarations are errors.
func parseModule(srcs map[string]string) (*tfModule, error) {
	p := hclparse.NewParser()
	m := &tfModule{vars: map[string]tfVar{}}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range srcs {
			if !yield(k) {
				return
			}
		}
	}) {
		f, diags := p.ParseHCL([]byte(srcs[name]), name)
		if diags.HasErrors() {
			return nil, diags
		}
		m.blocks = append(m.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	for _, b := range m.blocksOf("variable") {
		v := tfVar{block: b, ty: cty.DynamicPseudoType}
		if a, ok := b.Body.Attributes["type"]; ok {
			ty, dflts, diags := typeexpr.TypeConstraintWithDefaults(a.Expr)
			if diags.HasErrors() {
				return nil, diags
			}
			v.ty, v.dflts = ty, dflts
		}
		v.def = cty.NullVal(v.ty)
		if a, ok := b.Body.Attributes["default"]; ok {
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				return nil, diags
			}
			var err error
			if v.def, err = v.convert(val); err != nil {
				return nil, fmt.Errorf("variable %s: default: %w", b.Labels[0], err)
			}
		}
		m.vars[b.Labels[0]] = v
	}
	return m, nil
}

func (v tfVar) convert(val cty.Value) (cty.Value, error) {
	if v.dflts != nil {
		val = v.dflts.Apply(val)
	}
	return convert.Convert(val, v.ty)
}

func loadModule(t testing.TB) *tfModule {
	t.Helper()
	m, err := parseModule(readModule(t))
	if err != nil {
		t.Fatalf("parsing infra/terraform: %v", err)
	}
	return m
}

// blocksOf returns the top-level blocks of a type whose labels start with labels.
func (m *tfModule) blocksOf(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ && len(b.Labels) >= len(labels) && slices.Equal(b.Labels[:len(labels)], labels) {
			out = append(out, b)
		}
	}
	return out
}

func (m *tfModule) block(typ string, labels ...string) *hclsyntax.Block {
	if bs := m.blocksOf(typ, labels...); len(bs) == 1 {
		return bs[0]
	}
	return nil
}

// count evaluates a block's count: 1 without one. It must be known from the variables.
func (m *tfModule) count(b *hclsyntax.Block, ctx *hcl.EvalContext) (int, error) {
	if b == nil {
		return 0, fmt.Errorf("no such block")
	}
	a, ok := b.Body.Attributes["count"]
	if !ok {
		return 1, nil
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		return 0, diags
	}
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
		return 0, fmt.Errorf("count is not a number known from the variables: %#v", v)
	}
	n, acc := v.AsBigFloat().Int64()
	if acc != 0 || n < 0 {
		return 0, fmt.Errorf("count %s is not a whole number", v.AsBigFloat())
	}
	return int(n), nil
}

// countIndex is the index of a counted resource in a reference: aws_iam_role.lambda[0].arn.
var countIndex = regexp.MustCompile(`\[[0-9]+\]`)

// functions are the Terraform functions the module uses.
var functions = map[string]function.Function{
	"can":      tryfunc.CanFunc,
	"try":      tryfunc.TryFunc,
	"coalesce": stdlib.CoalesceFunc,
	"concat":   stdlib.ConcatFunc,
	"contains": stdlib.ContainsFunc,
	"distinct": stdlib.DistinctFunc,
	"element":  stdlib.ElementFunc,
	"floor":    stdlib.FloorFunc,
	"length":   stdlib.LengthFunc,
	"regex":    stdlib.RegexFunc,
	"replace":  stdlib.ReplaceFunc,
	"split":    stdlib.SplitFunc,
}

// fakeResources stands in for resource attributes that tests need as concrete values.
var fakeResources = map[string]map[string]cty.Value{
	"aws_s3_bucket": {"archive": cty.ObjectVal(map[string]cty.Value{
		"bucket": cty.StringVal("kinlog-archive-123456789012"),
		"id":     cty.StringVal("kinlog-archive-123456789012"),
		"arn":    cty.StringVal("arn:aws:s3:::kinlog-archive-123456789012"),
	})},
}

// evalContext returns a context with the variables' defaults replaced by overrides.
func (m *tfModule) evalContext(overrides map[string]cty.Value) (*hcl.EvalContext, error) {
	vars := map[string]cty.Value{}
	for name, v := range m.vars {
		vars[name] = v.def
	}
	for name, val := range overrides {
		v, ok := m.vars[name]
		if !ok {
			return nil, fmt.Errorf("override of undeclared variable %s", name)
		}
		cv, err := v.convert(val)
		if err != nil {
			return nil, fmt.Errorf("override of %s: %w", name, err)
		}
		vars[name] = cv
	}
	resources := map[string]map[string]cty.Value{}
	data := map[string]map[string]cty.Value{}
	for _, b := range m.blocks {
		target := resources
		switch b.Type {
		case "data":
			target = data
		case "resource":
		default:
			continue
		}
		if target[b.Labels[0]] == nil {
			target[b.Labels[0]] = map[string]cty.Value{}
		}
		v := cty.DynamicVal
		if b.Type == "resource" {
			if f, ok := fakeResources[b.Labels[0]][b.Labels[1]]; ok {
				v = f
			}
		}
		target[b.Labels[0]][b.Labels[1]] = v
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}, Functions: functions}
	for typ, byName := range resources {
		ctx.Variables[typ] = cty.ObjectVal(byName)
	}
	dataObj := map[string]cty.Value{}
	for typ, byName := range data {
		dataObj[typ] = cty.ObjectVal(byName)
	}
	ctx.Variables["data"] = cty.ObjectVal(dataObj)

	// Locals may refer to each other: compute them in rounds until nothing changes. Those
	// that depend on resources stay unknown.
	locals := map[string]hcl.Expression{}
	for _, b := range m.blocksOf("locals") {
		for name, a := range b.Body.Attributes {
			locals[name] = a.Expr
		}
	}
	vals := map[string]cty.Value{}
	for name := range locals {
		vals[name] = cty.DynamicVal
	}
	for range len(locals) + 1 {
		ctx.Variables["local"] = cty.ObjectVal(vals)
		for name, expr := range locals {
			if v, diags := expr.Value(ctx); !diags.HasErrors() {
				vals[name] = v
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(vals)
	return ctx, nil
}

// evalBlock is a block with the context its expressions evaluate in (a dynamic block's
// content sees its iterator).
type evalBlock struct {
	body *hclsyntax.Body
	ctx  *hcl.EvalContext
}

func (b evalBlock) attr(name string) (cty.Value, error) {
	a, ok := b.body.Attributes[name]
	if !ok {
		return cty.NilVal, fmt.Errorf("no attribute %s", name)
	}
	v, diags := a.Expr.Value(b.ctx)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return v, nil
}

// str evaluates a string attribute; "" when absent, null or unknown.
func (b evalBlock) str(name string) string {
	v, err := b.attr(name)
	if err != nil || v.IsNull() || !v.IsKnown() {
		return ""
	}
	if v, err = convert.Convert(v, cty.String); err != nil {
		return ""
	}
	return v.AsString()
}

// boolean evaluates a bool attribute; false unless it is known to be true.
func (b evalBlock) boolean(name string) bool {
	v, err := b.attr(name)
	return err == nil && v.IsKnown() && !v.IsNull() && v.Type() == cty.Bool && v.True()
}

// refs lists the references (e.g. local.kms_key_arn) an attribute's expression makes.
func (b evalBlock) refs(name string) []string {
	a, ok := b.body.Attributes[name]
	if !ok {
		return nil
	}
	var out []string
	for _, tr := range a.Expr.Variables() {
		out = append(out, traversalString(tr))
	}
	return out
}

// blocks expands the nested blocks of a type, static and dynamic, as Terraform would.
func (b evalBlock) blocks(typ string) ([]evalBlock, error) {
	var out []evalBlock
	for _, nb := range b.body.Blocks {
		switch {
		case nb.Type == typ:
			out = append(out, evalBlock{nb.Body, b.ctx})
		case nb.Type == "dynamic" && nb.Labels[0] == typ:
			fe, ok := nb.Body.Attributes["for_each"]
			if !ok {
				return nil, fmt.Errorf("dynamic %q without for_each", typ)
			}
			coll, diags := fe.Expr.Value(b.ctx)
			if diags.HasErrors() {
				return nil, diags
			}
			if !coll.IsWhollyKnown() {
				return nil, fmt.Errorf("dynamic %q: for_each is not known from the variables", typ)
			}
			var content *hclsyntax.Body
			for _, cb := range nb.Body.Blocks {
				if cb.Type == "content" {
					content = cb.Body
				}
			}
			if content == nil {
				return nil, fmt.Errorf("dynamic %q without content", typ)
			}
			for it := coll.ElementIterator(); it.Next(); {
				k, v := it.Element()
				child := b.ctx.NewChild()
				child.Variables = map[string]cty.Value{typ: cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
				out = append(out, evalBlock{content, child})
			}
		}
	}
	return out, nil
}

func (b evalBlock) one(typ string) (evalBlock, error) {
	bs, err := b.blocks(typ)
	if err != nil {
		return evalBlock{}, err
	}
	if len(bs) != 1 {
		return evalBlock{}, fmt.Errorf("%d %s blocks, want 1", len(bs), typ)
	}
	return bs[0], nil
}

func traversalString(tr hcl.Traversal) string {
	var sb strings.Builder
	for _, step := range tr {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.String {
				fmt.Fprintf(&sb, "[%q]", s.Key.AsString())
			} else {
				fmt.Fprintf(&sb, "[%s]", s.Key.AsBigFloat().String())
			}
		default:
			sb.WriteString("[*]")
		}
	}
	return sb.String()
}

// tfScenario is one set of variable values the module is checked under.
type tfScenario struct {
	name string
	vars map[string]cty.Value
}

// scenarios cover the switches that change what the module creates or grants.
var scenarios = []tfScenario{
	{"defaults", nil},
	{"provisioned stream, SSE-S3, no transitions", map[string]cty.Value{
		"stream_mode": cty.StringVal("PROVISIONED"), "shard_count": cty.NumberIntVal(8),
		"s3_sse_algorithm": cty.StringVal("AES256"), "transition_to_ia_days": cty.NumberIntVal(0),
		"transition_to_glacier_days": cty.NumberIntVal(0), "bucket_versioning": cty.StringVal("Enabled"),
	}},
	{"consumer creates its table", map[string]cty.Value{"allow_lease_table_creation": cty.True}},
	{"existing KMS key, every kind of trust", map[string]cty.Value{
		"kms_key_arn":           cty.StringVal("arn:aws:kms:eu-west-1:123456789012:key/0b4c7a52-5c3f-4d2e-9f37-7d1c8d0e7a11"),
		"eks_oidc_provider_arn": cty.StringVal("arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"),
		"producer_service_accounts": cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{
			"namespace": cty.StringVal("shop"), "name": cty.StringVal("checkout"),
		})}),
		"producer_trusted_principal_arns": cty.ListVal([]cty.Value{cty.StringVal("arn:aws:iam::123456789012:role/app")}),
		"producer_trusted_services":       cty.ListVal([]cty.Value{cty.StringVal("ecs-tasks.amazonaws.com")}),
		"consumer_trusted_principal_arns": cty.ListVal([]cty.Value{cty.StringVal("arn:aws:iam::123456789012:role/ops")}),
		"reader_trusted_principal_arns":   cty.ListVal([]cty.Value{cty.StringVal("arn:aws:iam::123456789012:role/analyst")}),
	}},
	{"serverless mode", map[string]cty.Value{"lambda_zip": cty.StringVal("dist/kinlog-lambda-arm64.zip")}},
	{"serverless mode, x86_64, SSE-S3, existing key, no limits", map[string]cty.Value{
		"lambda_zip": cty.StringVal("dist/kinlog-lambda-amd64.zip"), "lambda_architecture": cty.StringVal("x86_64"),
		"s3_sse_algorithm": cty.StringVal("AES256"), "lambda_failures_expiration_days": cty.NumberIntVal(0),
		"kms_key_arn":                   cty.StringVal("arn:aws:kms:eu-west-1:123456789012:key/0b4c7a52-5c3f-4d2e-9f37-7d1c8d0e7a11"),
		"lambda_maximum_retry_attempts": cty.NumberIntVal(-1), "lambda_maximum_record_age_in_seconds": cty.NumberIntVal(-1),
	}},
}

func (m *tfModule) resource(typ, name string, ctx *hcl.EvalContext) (evalBlock, error) {
	b := m.block("resource", typ, name)
	if b == nil {
		return evalBlock{}, fmt.Errorf("no resource %s.%s", typ, name)
	}
	return evalBlock{b.Body, ctx}, nil
}

// checkTerraform returns everything wrong with the module's resources under one scenario
// (IAM is checked separately, in iam_test.go).
func checkTerraform(m *tfModule, sc tfScenario) problems {
	var ps problems
	ctx, err := m.evalContext(sc.vars)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	vars := ctx.Variables["var"]
	get := func(typ, name string) evalBlock {
		r, err := m.resource(typ, name, ctx)
		if err != nil {
			ps = append(ps, err)
		}
		return r
	}
	must := func(err error) {
		if err != nil {
			ps = append(ps, err)
		}
	}

	// Provider pinned.
	if tf := m.block("terraform"); tf == nil {
		ps.addf("no terraform block")
	} else if rp, err := (evalBlock{tf.Body, nil}).one("required_providers"); err != nil {
		ps = append(ps, err)
	} else if aws, err := rp.attr("aws"); err != nil || !aws.Type().IsObjectType() || !aws.Type().HasAttribute("source") || !aws.Type().HasAttribute("version") {
		ps.addf("required_providers.aws must give source and version")
	} else if src, ver := aws.GetAttr("source").AsString(), aws.GetAttr("version").AsString(); src != "hashicorp/aws" || !regexp.MustCompile(`^~> ?\d+\.\d+|<`).MatchString(ver) {
		ps.addf("aws provider %s %q: want hashicorp/aws pinned with ~> or an upper bound", src, ver)
	}

	// KMS key (created unless one is passed in).
	if vars.GetAttr("kms_key_arn").IsNull() {
		k := get("aws_kms_key", "this")
		if k.body != nil && !k.boolean("enable_key_rotation") {
			ps.addf("aws_kms_key.this: enable_key_rotation must be true")
		}
	}
	keyRef := func(what string, refs []string) {
		if !slices.Contains(refs, "local.kms_key_arn") {
			ps.addf("%s does not use local.kms_key_arn (refers to %v)", what, refs)
		}
	}

	// Kinesis stream.
	if s := get("aws_kinesis_stream", "this"); s.body != nil {
		if s.str("encryption_type") != "KMS" {
			ps.addf("aws_kinesis_stream.this: encryption_type %q, want KMS", s.str("encryption_type"))
		}
		keyRef("aws_kinesis_stream.this kms_key_id", s.refs("kms_key_id"))
		mode := vars.GetAttr("stream_mode").AsString()
		smd, err := s.one("stream_mode_details")
		must(err)
		if err == nil && smd.str("stream_mode") != mode {
			ps.addf("aws_kinesis_stream.this: stream_mode %q, want var.stream_mode %q", smd.str("stream_mode"), mode)
		}
		sc, err := s.attr("shard_count")
		switch {
		case err != nil:
			ps = append(ps, err)
		case mode == "ON_DEMAND" && !sc.IsNull():
			ps.addf("aws_kinesis_stream.this: an ON_DEMAND stream must not set shard_count (got %#v)", sc)
		case mode == "PROVISIONED" && (sc.IsNull() || !sc.RawEquals(vars.GetAttr("shard_count"))):
			ps.addf("aws_kinesis_stream.this: a PROVISIONED stream needs shard_count = var.shard_count (got %#v)", sc)
		}
	}

	// DynamoDB lease table: KCL schema with the KCL 3.x owner index, on-demand,
	// point-in-time recovery.
	if d := get("aws_dynamodb_table", "leases"); d.body != nil {
		if d.str("billing_mode") != "PAY_PER_REQUEST" {
			ps.addf("aws_dynamodb_table.leases: billing_mode %q, want PAY_PER_REQUEST", d.str("billing_mode"))
		}
		if d.str("hash_key") != "leaseKey" || d.str("range_key") != "" {
			ps.addf("aws_dynamodb_table.leases: want hash key leaseKey and no range key")
		}
		attrs, err := d.blocks("attribute")
		must(err)
		names := map[string]string{}
		for _, a := range attrs {
			names[a.str("name")] = a.str("type")
		}
		if len(attrs) != 2 || names["leaseKey"] != "S" || names["leaseOwner"] != "S" {
			ps.addf("aws_dynamodb_table.leases: want exactly the attributes leaseKey and leaseOwner, of type S")
		}
		gsi, err := d.one("global_secondary_index")
		if err != nil || gsi.str("name") != "LeaseOwnerToLeaseKeyIndex" || gsi.str("hash_key") != "leaseOwner" || gsi.str("range_key") != "leaseKey" || gsi.str("projection_type") != "KEYS_ONLY" {
			ps.addf("aws_dynamodb_table.leases: want the global_secondary_index LeaseOwnerToLeaseKeyIndex (hash leaseOwner, range leaseKey, KEYS_ONLY) that leader assignment queries")
		}
		pitr, err := d.one("point_in_time_recovery")
		if err != nil || !pitr.boolean("enabled") {
			ps.addf("aws_dynamodb_table.leases: point_in_time_recovery must be enabled")
		}
	}

	// S3 archive.
	if b := get("aws_s3_bucket_public_access_block", "archive"); b.body != nil {
		for _, a := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
			if !b.boolean(a) {
				ps.addf("aws_s3_bucket_public_access_block.archive: %s must be true", a)
			}
		}
		if !slices.Contains(b.refs("bucket"), "aws_s3_bucket.archive.id") {
			ps.addf("aws_s3_bucket_public_access_block.archive is not on aws_s3_bucket.archive")
		}
	}
	if o := get("aws_s3_bucket_ownership_controls", "archive"); o.body != nil {
		r, err := o.one("rule")
		if err != nil || r.str("object_ownership") != "BucketOwnerEnforced" {
			ps.addf("aws_s3_bucket_ownership_controls.archive: want BucketOwnerEnforced (ACLs off)")
		}
	}
	if e := get("aws_s3_bucket_server_side_encryption_configuration", "archive"); e.body != nil {
		alg := vars.GetAttr("s3_sse_algorithm").AsString()
		rule, err := e.one("rule")
		must(err)
		if err == nil {
			def, err := rule.one("apply_server_side_encryption_by_default")
			must(err)
			if err == nil {
				if got := def.str("sse_algorithm"); got != alg || (got != "aws:kms" && got != "AES256") {
					ps.addf("archive encryption %q, want var.s3_sse_algorithm %q", got, alg)
				}
				key, err := def.attr("kms_master_key_id")
				switch {
				case err != nil:
					ps = append(ps, err)
				case alg == "aws:kms":
					keyRef("archive SSE-KMS kms_master_key_id", def.refs("kms_master_key_id"))
					if key.IsNull() {
						ps.addf("archive SSE-KMS without a key")
					}
				case !key.IsNull():
					ps.addf("archive SSE-S3 must not name a KMS key")
				}
				if rule.boolean("bucket_key_enabled") != (alg == "aws:kms") {
					ps.addf("archive: bucket_key_enabled should be on exactly with SSE-KMS")
				}
			}
		}
	}
	if v := get("aws_s3_bucket_versioning", "archive"); v.body != nil {
		vc, err := v.one("versioning_configuration")
		if err != nil || vc.str("status") != vars.GetAttr("bucket_versioning").AsString() {
			ps.addf("aws_s3_bucket_versioning.archive: status must be var.bucket_versioning")
		}
	}
	if lc := get("aws_s3_bucket_lifecycle_configuration", "archive"); lc.body != nil {
		rules, err := lc.blocks("rule")
		must(err)
		want := map[string]int64{}
		for _, tr := range []struct{ days, class string }{{"transition_to_ia_days", "STANDARD_IA"}, {"transition_to_glacier_days", vars.GetAttr("glacier_storage_class").AsString()}} {
			if d, _ := vars.GetAttr(tr.days).AsBigFloat().Int64(); d > 0 {
				want[tr.class] = d
			}
		}
		got := map[string]int64{}
		abort := false
		for _, r := range rules {
			if r.str("status") != "Enabled" {
				continue
			}
			trs, err := r.blocks("transition")
			must(err)
			for _, tr := range trs {
				d, err := tr.attr("days")
				if err == nil && d.Type() == cty.Number {
					got[tr.str("storage_class")], _ = d.AsBigFloat().Int64()
				}
			}
			abs, err := r.blocks("abort_incomplete_multipart_upload")
			must(err)
			abort = abort || len(abs) > 0
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			ps.addf("archive lifecycle transitions %v, want %v from the variables", got, want)
		}
		if !abort {
			ps.addf("archive lifecycle does not abort incomplete multipart uploads")
		}
	}

	ps = append(ps, checkGlue(m, ctx)...)
	return ps
}

// archivePrefix is the sink's default archive prefix (also the ConfigMap's); the Glue
// table's projection must produce exactly these partition locations.
const archivePrefix = prefix.DefaultArchive

func checkGlue(m *tfModule, ctx *hcl.EvalContext) problems {
	var ps problems
	tbl, err := m.resource("aws_glue_catalog_table", "logs", ctx)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	if tbl.str("table_type") != "EXTERNAL_TABLE" {
		ps.addf("Glue table: table_type %q, want EXTERNAL_TABLE", tbl.str("table_type"))
	}
	params, err := tbl.attr("parameters")
	if err != nil || !params.IsWhollyKnown() {
		ps.addf("Glue table: parameters not known from the variables: %v", err)
		return ps
	}
	p := map[string]string{}
	for k, v := range params.AsValueMap() {
		p[k] = v.AsString()
	}
	bucket := fakeResources["aws_s3_bucket"]["archive"].GetAttr("bucket").AsString()
	// The template Athena fills in must be the sink's prefix with the two time expressions
	// replaced by the partition columns.
	wantTemplate := "s3://" + bucket + "/" + strings.NewReplacer("!{timestamp:yyyy-MM-dd}", "${dt}", "!{timestamp:HH}", "${hour}").Replace(archivePrefix)
	start := ctx.Variables["var"].GetAttr("partition_projection_start").AsString()
	for k, want := range map[string]string{
		"projection.enabled":          "true",
		"projection.dt.type":          "date",
		"projection.dt.format":        "yyyy-MM-dd",
		"projection.dt.range":         start + ",NOW",
		"projection.dt.interval":      "1",
		"projection.dt.interval.unit": "DAYS",
		"projection.hour.type":        "integer",
		"projection.hour.range":       "0,23",
		"projection.hour.digits":      "2",
		"storage.location.template":   wantTemplate,
	} {
		if p[k] != want {
			ps.addf("Glue table: %s = %q, want %q", k, p[k], want)
		}
	}
	var keys []string
	pks, err := tbl.blocks("partition_keys")
	if err != nil {
		ps = append(ps, err)
	}
	for _, pk := range pks {
		keys = append(keys, pk.str("name")+" "+pk.str("type"))
	}
	if !slices.Equal(keys, []string{"dt string", "hour int"}) {
		ps.addf("Glue table: partition keys %v, want [dt string, hour int]", keys)
	}
	sd, err := tbl.one("storage_descriptor")
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	if loc := sd.str("location"); !strings.HasPrefix(wantTemplate, loc) || !strings.HasSuffix(loc, "/") {
		ps.addf("Glue table: location %q is not the archive prefix above %q", loc, wantTemplate)
	}
	if sd.str("input_format") != "org.apache.hadoop.mapred.TextInputFormat" {
		ps.addf("Glue table: input_format %q, want TextInputFormat (reads .gz by extension)", sd.str("input_format"))
	}
	serde, err := sd.one("ser_de_info")
	if err != nil || serde.str("serialization_library") != "org.openx.data.jsonserde.JsonSerDe" {
		ps.addf("Glue table: want the OpenX JSON SerDe")
	}
	cols, err := sd.blocks("columns")
	if err != nil {
		ps = append(ps, err)
	}
	if len(cols) == 0 {
		ps.addf("Glue table: no columns")
	}
	for _, c := range cols {
		if c.str("name") == "dt" || c.str("name") == "hour" {
			ps.addf("Glue table: column %s clashes with a partition key", c.str("name"))
		}
	}
	return ps
}

// checkVariables requires every variable to be documented with its default (style: every
// option states its default) and every default to pass the variable's own validations.
func checkVariables(m *tfModule) problems {
	var ps problems
	ctx, err := m.evalContext(nil)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	for _, name := range sortedKeys(m.vars) {
		v := m.vars[name]
		b := evalBlock{v.block.Body, ctx}
		if d := b.str("description"); !strings.Contains(d, "Default") {
			ps.addf("variable %s: description must state the default: %q", name, d)
		}
		if _, ok := v.block.Body.Attributes["default"]; !ok {
			ps.addf("variable %s: no default; the module must plan with no inputs", name)
		}
		vs, err := b.blocks("validation")
		if err != nil {
			ps = append(ps, err)
		}
		for _, val := range vs {
			ok, err := val.attr("condition")
			if err != nil || !ok.IsKnown() || ok.Type() != cty.Bool || ok.False() {
				ps.addf("variable %s: the default fails its validation (%v)", name, err)
			}
		}
	}
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestTerraformResources(t *testing.T) {
	m := loadModule(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			requireNone(t, "infra/terraform", checkTerraform(m, sc))
		})
	}
}

func TestTerraformVariables(t *testing.T) {
	requireNone(t, "infra/terraform", checkVariables(loadModule(t)))
}

// TestTerraformValidationsReject feeds bad values to the variables' validations.
func TestTerraformValidationsReject(t *testing.T) {
	m := loadModule(t)
	for _, tc := range []struct {
		name string
		val  cty.Value
	}{
		{"stream_mode", cty.StringVal("SERVERLESS")},
		{"shard_count", cty.NumberIntVal(0)},
		{"stream_retention_hours", cty.NumberIntVal(12)},
		{"kms_key_arn", cty.StringVal("alias/kinlog")},
		{"s3_sse_algorithm", cty.StringVal("aws:kms:dsse")},
		{"transition_to_ia_days", cty.NumberIntVal(10)},
		{"glacier_storage_class", cty.StringVal("ONEZONE_IA")},
		{"archive_prefix", cty.StringVal("logs")},
		{"bucket_versioning", cty.StringVal("On")},
		{"name", cty.StringVal("Kinlog_Prod")},
		{"partition_projection_start", cty.StringVal("2024/01/01")},
		{"lambda_zip", cty.StringVal("dist/lambda/arm64/bootstrap")},
		{"lambda_architecture", cty.StringVal("amd64")},
		{"lambda_log_level", cty.StringVal("verbose")},
		{"lambda_log_retention_days", cty.NumberIntVal(10)},
		{"lambda_failures_expiration_days", cty.NumberIntVal(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := m.evalContext(map[string]cty.Value{tc.name: tc.val})
			if err != nil {
				t.Fatal(err)
			}
			vs, err := (evalBlock{m.vars[tc.name].block.Body, ctx}).blocks("validation")
			if err != nil || len(vs) == 0 {
				t.Fatalf("variable %s has no validation (%v)", tc.name, err)
			}
			for _, v := range vs {
				if ok, err := v.attr("condition"); err == nil && ok.IsKnown() && ok.False() {
					return
				}
			}
			t.Errorf("variable %s accepts %#v", tc.name, tc.val)
		})
	}
}

// TestTerraformChecksCatch edits one thing at a time in the module's source and requires the
// checks to report it.
func TestTerraformChecksCatch(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new, want string
		vars                       map[string]cty.Value
	}{
		{name: "PITR off", file: "main.tf", old: "point_in_time_recovery {\n    enabled = true", new: "point_in_time_recovery {\n    enabled = false", want: "point_in_time_recovery must be enabled"},
		{name: "provisioned billing", file: "main.tf", old: `billing_mode                = "PAY_PER_REQUEST"`, new: `billing_mode = "PROVISIONED"`, want: "want PAY_PER_REQUEST"},
		{name: "wrong hash key", file: "main.tf", old: `hash_key                    = "leaseKey"`, new: `hash_key = "ShardID"`, want: "hash key leaseKey"},
		{name: "public ACLs", file: "main.tf", old: "ignore_public_acls      = true", new: "ignore_public_acls = false", want: "ignore_public_acls must be true"},
		{name: "stream unencrypted", file: "main.tf", old: `encryption_type  = "KMS"`, new: `encryption_type = "NONE"`, want: "encryption_type"},
		{name: "stream key", file: "main.tf", old: "kms_key_id       = local.kms_key_arn", new: `kms_key_id = "alias/aws/kinesis"`, want: "kms_key_id does not use"},
		{name: "on-demand with shards", file: "main.tf", old: `shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null`, new: "shard_count = var.shard_count", want: "ON_DEMAND stream must not set shard_count"},
		{name: "provisioned without shards", file: "main.tf", old: `shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null`, new: "shard_count = null", want: "PROVISIONED stream needs shard_count", vars: map[string]cty.Value{"stream_mode": cty.StringVal("PROVISIONED")}},
		{name: "no key rotation", file: "main.tf", old: "enable_key_rotation     = true", new: "enable_key_rotation = false", want: "enable_key_rotation"},
		{name: "fixed SSE", file: "main.tf", old: "sse_algorithm     = var.s3_sse_algorithm", new: `sse_algorithm = "aws:kms"`, want: "archive encryption", vars: map[string]cty.Value{"s3_sse_algorithm": cty.StringVal("AES256")}},
		{name: "transition ignores variable", file: "main.tf", old: `storage_class = "STANDARD_IA"`, new: `storage_class = "ONEZONE_IA"`, want: "lifecycle transitions"},
		{name: "no multipart cleanup", file: "main.tf", old: "abort_incomplete_multipart_upload {\n      days_after_initiation = 7\n    }", new: "", want: "abort incomplete multipart"},
		{name: "hour projection", file: "glue.tf", old: `"projection.hour.digits" = "2"`, new: `"projection.hour.digits" = "1"`, want: "projection.hour.digits"},
		{name: "template", file: "glue.tf", old: "dt=$${dt}/hour=$${hour}/", new: "$${dt}/$${hour}/", want: "storage.location.template"},
		{name: "serde", file: "glue.tf", old: "org.openx.data.jsonserde.JsonSerDe", new: "org.apache.hive.hcatalog.data.JsonSerDe", want: "OpenX"},
		{name: "unpinned provider", file: "versions.tf", old: `version = "~> 6.0"`, new: `version = ">= 5.0"`, want: "pinned"},
		{name: "syntax", file: "main.tf", old: "resource \"aws_s3_bucket\" \"archive\" {", new: "resource \"aws_s3_bucket\" \"archive\" {{", want: "parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcs := readModule(t)
			if !strings.Contains(srcs[tc.file], tc.old) {
				t.Fatalf("%s no longer contains %q; update the test", tc.file, tc.old)
			}
			srcs[tc.file] = strings.Replace(srcs[tc.file], tc.old, tc.new, 1)
			m, err := parseModule(srcs)
			if err != nil {
				requireProblem(t, problems{fmt.Errorf("parsing: %w", err)}, tc.want)
				return
			}
			requireProblem(t, checkTerraform(m, tfScenario{tc.name, tc.vars}), tc.want)
		})
	}
}
