// Jinja engine tests. Expected outputs were produced by Python jinja2 3.1.6 under transformers'
// settings (tests/py/jinja_oracle.py render_raw) with the variables in kVars; the Python
// differential suite (tests/py/test_chat_template_diff.py) re-checks them against live jinja2.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "deltaserve/text/jinja/jinja.h"

namespace {

using ds::text::JinjaLimits;
using ds::text::JinjaTemplate;
using ojson = nlohmann::ordered_json;

const char* kVars =
    R"({"d": {"a": 1, "b": [1, 2], "c": {"x": null, "y": 1.5}}, "l": [3, 1, 2], "s": "Héllo wörld", "t": true, "e": ""})";

ds::Result<std::string> render(const std::string& tmpl, const ojson& vars = ojson::parse(kVars),
                               const JinjaLimits& limits = {}) {
  auto t = JinjaTemplate::compile(tmpl);
  if (!t) return t.status();
  return t->render(vars, limits);
}

struct Case {
  const char* name;
  const char* tmpl;
  const char* expected;
};

const Case kCases[] = {
    {"whitespace", R"J(  {% if t %}
    x
  {% endif %}
  y  {{- ' z ' -}}  w
{# c #}
  {%- if t -%}  q  {%+ if t %}r{% endif %}{% endif %}
)J", R"J(    x
  y z w
q  r)J"},
    {"loop_vars", R"J({% for x in l if x > 1 %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.length }}{{ loop.first }}{{ loop.last }}{{ loop.previtem }}{{ loop.nextitem }};{% else %}E{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %})J", R"J(1022TrueFalse2;2112FalseTrue3;empty)J"},
    {"loop_control", R"J({% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %})J", R"J(0246)J"},
    {"scoping", R"J({% set ns = namespace(c=0) %}{% for x in l %}{% set ns.c = ns.c + x %}{% set inner = x %}{% endfor %}{{ ns.c }}[{{ inner }}]{% if t %}{% set leaked = 1 %}{% endif %}{{ leaked }})J", R"J(6[]1)J"},
    {"macro", R"J({% macro m(a, b=2, c='z') -%}
<{{ a }}|{{ b }}|{{ c }}>
{%- endmacro %}{{ m(1) }}{{ m(1, c=3) }}{{ m() }})J", R"J(<1|2|z><1|2|3><|2|z>)J"},
    {"slicing", R"J({{ s[1:4] }}|{{ s[::-1] }}|{{ l[::-1] }}|{{ l[-1] }}|{{ l[5] }}|{{ s|length }}|{{ 'abcdef'[5:1:-2] }})J", R"J(éll|dlröw olléH|[2, 1, 3]|2||11|fd)J"},
    {"py_str", R"J({{ d }}|{{ l }}|{{ t }}|{{ none }}|{{ (1, 'a') }}|{{ ['it\'s'] }}|{{ 1/3 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 2.0 }}|{{ 7//2 }}|{{ -7 % 3 }})J", R"J({'a': 1, 'b': [1, 2], 'c': {'x': None, 'y': 1.5}}|[3, 1, 2]|True|None|(1, 'a')|["it's"]|0.3333333333333333|1e+16|1e-05|2.0|3|2)J"},
    {"tojson", R"J({{ d|tojson }}|{{ s|tojson }}|{{ d|tojson(indent=2) }}|{{ ['\u0001', 1.0]|tojson }})J", R"J({"a": 1, "b": [1, 2], "c": {"x": null, "y": 1.5}}|"Héllo wörld"|{
  "a": 1,
  "b": [
    1,
    2
  ],
  "c": {
    "x": null,
    "y": 1.5
  }
}|["\u0001", 1.0])J"},
    {"undefined", R"J({{ u is defined }}{{ u is iterable }}{{ u|length }}[{{ u }}]{{ u ~ 'x' }}{% for x in u %}no{% endfor %}{{ d.zz is defined }}{{ d.get('zz', 'dflt') }})J", R"J(FalseTrue0[]xFalsedflt)J"},
    {"attr_vs_item", R"J({{ d.a }}{{ d['a'] }}{{ d.items()|list }}{{ d|items|list }}{{ d.keys()|list }})J", R"J(11[('a', 1), ('b', [1, 2]), ('c', {'x': None, 'y': 1.5})][('a', 1), ('b', [1, 2]), ('c', {'x': None, 'y': 1.5})]['a', 'b', 'c'])J"},
    {"string_methods", R"J({{ ' x '.strip() }}|{{ 'a,b'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'abc'.startswith('a') }}|{{ 'a.b'.replace('.', '::') }}|{{ 'ab'.upper() }}|{{ 'hello world'.title() }}|{{ 'x<y'.endswith('y') }})J", R"J(x|['a', 'b']|['a', 'b']|['a-b', 'c']|True|a::b|AB|Hello World|True)J"},
    {"filters", R"J({{ l|sort }}|{{ l|join('-') }}|{{ l|first }}|{{ l|last }}|{{ l|sum }}|{{ ['a','A','b']|unique|list }}|{{ [{'a': 1}]|map(attribute='a')|list }}|{{ [{'a': 0}, {'a': 2}]|selectattr('a')|list }}|{{ '3'|int + 1 }}|{{ 'x'|default('d') }}{{ u|default('d') }}|{{ '  t  '|trim }}|{{ 'ab'|capitalize }})J", R"J([1, 2, 3]|3-1-2|3|2|6|['a', 'b']|[1]|[{'a': 2}]|4|xd|t|Ab)J"},
    {"set_block", R"J({% set x %}
  captured {{ l|length }}
{% endset %}[{{ x }}]{% set y | trim | upper %}  y  {% endset %}[{{ y }}])J", R"J([  captured 3
][Y])J"},
    {"conditional", R"J({{ 'a' if e else 'b' }}{{ 'c' if t }}{{ e or 'dflt' }}{{ t and 'yes' }}{{ not e }}{{ 1 < 2 < 3 }}{{ 'l' in s }}{{ 9 not in l }})J", R"J(bcdfltyesTrueTrueTrueTrue)J"},
};

TEST(Jinja, MatchesPythonJinja2) {
  for (const auto& c : kCases) {
    auto out = render(c.tmpl);
    ASSERT_TRUE(out.is_ok()) << c.name << ": " << out.status().message();
    EXPECT_EQ(*out, c.expected) << c.name;
  }
}

TEST(Jinja, TrailingNewlineIsDroppedAndCrlfNormalised) {
  EXPECT_EQ(*render("a\r\nb\rc\n"), "a\nb\nc");
  EXPECT_EQ(*render("a\n\n"), "a\n");
}

TEST(Jinja, DictOrderIsInsertionOrder) {
  auto vars = ojson::parse(R"({"m": {"zeta": 1, "alpha": 2, "mid": 3}})");
  EXPECT_EQ(*render("{% for k in m %}{{ k }},{% endfor %}{{ m|tojson }}", vars),
            R"(zeta,alpha,mid,{"zeta": 1, "alpha": 2, "mid": 3})");
}

TEST(Jinja, SelfReferencingNamespacePrintsLikePython) {
  EXPECT_EQ(*render("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}"),
            "<Namespace {'a': 1, 'me': <Namespace {...}>}>");
}

TEST(Jinja, RaiseExceptionMessageIsTheError) {
  auto out = render("{{ raise_exception('System message must be at the beginning.') }}");
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().code(), ds::ErrorCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "System message must be at the beginning.");
}

TEST(Jinja, MalformedTemplatesAreErrorsNotCrashes) {
  const char* bad[] = {"{% for %}", "{{ 1 + }}", "{% if t %}never closed", "{{ unclosed", "{# unterminated",
                       "{% endfor %}", "{% macro %}", "{{ 'abc }}", "{{ (1, 2 }}", "{{ [1, 2) }}", "{% set %}",
                       "{% if %}{% endif %}", "{{ a.b. }}", "{% for x in l %}{% endif %}", "{{ x | }}",
                       "{% raw %}no end", "{{ 1 is }}", "{% include 'x' %}", "{% unknown_tag %}", "{{ }}"};
  for (const char* t : bad) {
    auto c = JinjaTemplate::compile(t);
    EXPECT_FALSE(c.is_ok()) << t;
    if (!c.is_ok()) {
      EXPECT_EQ(c.status().code(), ds::ErrorCode::kInvalidArgument) << t;
    }
  }
}

TEST(Jinja, MisuseAtRenderTimeIsAnError) {
  const char* bad[] = {"{{ u.x }}", "{{ u + 1 }}", "{{ 'a' + 1 }}", "{{ l.append(1) }}", "{{ d.update({}) }}",
                       "{{ 1 / 0 }}", "{{ u|tojson }}", "{{ d.zz.yy }}", "{{ 'a' < 1 }}", "{{ nofilter|bogus }}",
                       "{{ 1 is bogus }}", "{% for a, b in l %}{% endfor %}", "{{ 5() }}", "{{ d|items|items }}",
                       "{% set n = namespace() %}{% set n._x = 1 %}"};
  for (const char* t : bad) {
    auto out = render(t);
    EXPECT_FALSE(out.is_ok()) << t << " rendered " << (out.is_ok() ? *out : "");
  }
}

TEST(Jinja, RunawayTemplatesHitTheLimits) {
  JinjaLimits small;
  small.max_steps = 200000;
  small.max_output_bytes = 1 << 20;
  auto rec = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", ojson::object(), small);
  ASSERT_FALSE(rec.is_ok());
  EXPECT_EQ(rec.status().code(), ds::ErrorCode::kResourceExhausted);
  auto loop = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     ojson::object(), small);
  ASSERT_FALSE(loop.is_ok());
  EXPECT_EQ(loop.status().code(), ds::ErrorCode::kResourceExhausted);
  auto out = render("{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}", ojson::object(),
                    small);
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().code(), ds::ErrorCode::kResourceExhausted);
  auto grow = render(
      "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
      ojson::object(), small);
  EXPECT_FALSE(grow.is_ok());
  EXPECT_FALSE(render("{{ range(10**12)|list }}", ojson::object(), small).is_ok());
  EXPECT_FALSE(render("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").is_ok());  // nesting limit
}

TEST(Jinja, ContentFormatDetectionFollowsVllm) {
  auto loops_content = [](const char* t) { return JinjaTemplate::compile(t)->iterates_message_content(); };
  EXPECT_TRUE(loops_content("{% for m in messages %}{% for p in m['content'] %}{% endfor %}{% endfor %}"));
  EXPECT_TRUE(loops_content("{% set ms = messages[1:] %}{% for m in ms %}{% for p in m.content %}{% endfor %}{% endfor %}"));
  EXPECT_TRUE(loops_content("{% macro r(content) %}{% for p in content %}{% endfor %}{% endmacro %}"));
  EXPECT_FALSE(loops_content("{% for m in messages %}{{ m.content }}{% endfor %}"));
  EXPECT_FALSE(loops_content("{% for m in other %}{% for p in m.content %}{% endfor %}{% endfor %}"));
}

// Mutated templates and random byte strings must compile or fail cleanly, and rendering whatever
// compiles must return (bounded by the limits) without crashing.
TEST(Jinja, FuzzedTemplatesNeverCrash) {
  const std::string seed =
      "{%- for m in messages %}{{- '<|im_start|>' + m.role }}{% if m.content is string %}{{ m.content|trim }}"
      "{% elif m.content %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}{%- set ns = namespace(x=1) %}"
      "{{ (ns.x + 2) * 3 }}{{ m|tojson }}{# c #}{% endfor %}{% macro f(a, b=1) %}{{ a ~ b }}{% endmacro %}{{ f(1) }}";
  const std::string alphabet = "{}%#-+|.()[]'\"=,: abcdefxyz0123456789\n\\";
  auto vars = ojson::parse(R"({"messages": [{"role": "user", "content": "hi"}, {"role": "a", "content": [{"text": "t"}]}]})");
  JinjaLimits small;
  small.max_steps = 20000;
  std::mt19937 rng(1234);
  int compiled = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string t = seed;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % (t.size() + 1);
      switch (rng() % 3) {
        case 0: t.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (pos < t.size()) t.erase(pos, 1); break;
        default: if (pos < t.size()) t[pos] = alphabet[rng() % alphabet.size()];
      }
    }
    auto c = JinjaTemplate::compile(t);
    if (!c) continue;
    ++compiled;
    auto out = c->render(vars, small);
    (void)out;
  }
  EXPECT_GT(compiled, 100);
}

}  // namespace
