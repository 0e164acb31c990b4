// Jinja parser: tokens -> Program, following jinja2.parser.Parser's grammar and precedence
// (or < and < not < compare < +,- < ~ < *,/,//,% < ** < unary < postfix/filters/tests).
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include "deltaserve/text/jinja/jinja_ast.h"

namespace ds::text::jinja {
namespace {

constexpr int kMaxNesting = 200;  // deeper expressions/blocks are rejected, not a stack overflow

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  Program run() {
    Program p;
    p.body = parse_body({});
    if (cur().type != Tok::kEnd) fail("unexpected tag");
    return p;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::kName && cur().text == n; }
  [[noreturn]] void fail(const std::string& msg) const {
    throw TemplateError("syntax error on line " + std::to_string(cur().line) + ": " + msg);
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Tok::kEnd: return "end of template";
      case Tok::kBlockEnd: return "end of statement block";
      case Tok::kVarEnd: return "end of print statement";
      case Tok::kData: return "template data";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) fail("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::kBlockEnd) fail("expected end of statement block, got " + describe(cur()));
    next();
  }
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxNesting) p->fail("template nested too deeply");
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };
  ExprPtr make(ExprKind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = cur().line;
    return e;
  }

  // Parses statements until a block tag whose first name is in `ends` (left unconsumed, at the name).
  std::vector<Stmt> parse_body(const std::vector<std::string>& ends) {
    DepthGuard g(this);
    std::vector<Stmt> body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kEnd) {
        if (!ends.empty()) fail("unexpected end of template, expected '" + ends.back() + "'");
        return body;
      }
      if (t.type == Tok::kData) {
        Stmt s(StmtKind::kText);
        s.line = t.line;
        s.text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.type == Tok::kVarBegin) {
        next();
        Stmt s(StmtKind::kPrint);
        s.line = t.line;
        s.expr = parse_tuple(true, false);
        if (cur().type != Tok::kVarEnd) fail("expected end of print statement, got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::kBlockBegin) {
        const Token& kw = peek();
        if (kw.type == Tok::kName) {
          for (const auto& e : ends)
            if (kw.text == e) {
              next();
              return body;
            }
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail("unexpected token " + describe(t));
      }
    }
  }

  Stmt parse_statement() {
    if (cur().type != Tok::kName) fail("tag name expected");
    std::string kw = cur().text;
    int line = cur().line;
    next();
    Stmt s(StmtKind::kText);
    s.line = line;
    if (kw == "if") return parse_if(line);
    if (kw == "for") {
      s.kind = StmtKind::kFor;
      s.targets = parse_target_names();
      if (!is_name("in")) fail("expected 'in', got " + describe(cur()));
      next();
      s.expr = parse_tuple(false, false, "recursive");
      if (is_name("if")) {
        next();
        s.cond = parse_expression();
      }
      if (is_name("recursive")) {
        next();
        s.recursive = true;
      }
      expect_block_end();
      s.body = parse_body({"endfor", "else"});
      if (is_name("else")) {
        next();
        expect_block_end();
        s.else_body = parse_body({"endfor"});
      }
      next();
      expect_block_end();
      return s;
    }
    if (kw == "set") {
      std::string first = expect_name();
      if (is_op(".")) {
        next();
        s.ns_attr = expect_name();
        s.targets = {first};
      } else {
        s.targets = {first};
        while (is_op(",")) {
          next();
          s.targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        s.kind = StmtKind::kSet;
        s.expr = parse_tuple(true, false);
        expect_block_end();
        return s;
      }
      s.kind = StmtKind::kSetBlock;
      if (s.targets.size() != 1) fail("block set takes a single target");
      if (is_op("|")) s.expr = parse_filter_chain(nullptr);
      expect_block_end();
      s.body = parse_body({"endset"});
      next();
      expect_block_end();
      return s;
    }
    if (kw == "macro") {
      s.kind = StmtKind::kMacro;
      s.text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        if (!s.targets.empty()) expect_op(",");
        if (is_op(")")) break;
        s.targets.push_back(expect_name());
        if (is_op("=")) {
          next();
          s.defaults.push_back(parse_expression());
        } else {
          s.defaults.push_back(nullptr);
        }
      }
      next();
      expect_block_end();
      s.body = parse_body({"endmacro"});
      next();
      if (cur().type == Tok::kName && cur().text == s.text) next();
      expect_block_end();
      return s;
    }
    if (kw == "break" || kw == "continue") {
      s.kind = kw == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      if (loop_depth_hint_ < 0) fail("'" + kw + "' outside of a loop");
      expect_block_end();
      return s;
    }
    if (kw == "filter") {
      s.kind = StmtKind::kFilterBlock;
      s.expr = parse_filter_chain(nullptr, true);
      expect_block_end();
      s.body = parse_body({"endfilter"});
      next();
      expect_block_end();
      return s;
    }
    if (kw == "with") {
      s.kind = StmtKind::kWith;
      while (cur().type != Tok::kBlockEnd) {
        if (!s.targets.empty()) expect_op(",");
        s.targets.push_back(expect_name());
        expect_op("=");
        s.defaults.push_back(parse_expression());
      }
      expect_block_end();
      s.body = parse_body({"endwith"});
      next();
      expect_block_end();
      return s;
    }
    if (kw == "generation") {  // transformers' AssistantTracker tag: renders its body unchanged
      s.kind = StmtKind::kWith;
      expect_block_end();
      s.body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return s;
    }
    if (kw == "call") fail("'call' blocks are not supported by deltaserve's template engine");
    if (kw == "include" || kw == "import" || kw == "from" || kw == "extends" || kw == "block")
      fail("'" + kw + "' is not supported in chat templates (no template loader)");
    fail("Encountered unknown tag '" + kw + "'");
  }

  Stmt parse_if(int line) {
    Stmt s(StmtKind::kIf);
    s.line = line;
    s.expr = parse_tuple(false, false);
    expect_block_end();
    s.body = parse_body({"elif", "else", "endif"});
    if (is_name("elif")) {
      int l = cur().line;
      next();
      s.else_body.push_back(parse_if(l));
      return s;  // the nested if consumed endif
    }
    if (is_name("else")) {
      next();
      expect_block_end();
      s.else_body = parse_body({"endif"});
    }
    next();  // endif
    expect_block_end();
    return s;
  }

  std::vector<std::string> parse_target_names() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) next();
    names.push_back(expect_name());
    while (is_op(",")) {
      next();
      if (paren && is_op(")")) break;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  bool tuple_end(const char* extra_end) const {
    const Token& t = cur();
    if (t.type == Tok::kVarEnd || t.type == Tok::kBlockEnd || t.type == Tok::kEnd) return true;
    if (t.type == Tok::kOp && (t.text == ")" || t.text == "]" || t.text == "}")) return true;
    return extra_end && t.type == Tok::kName && t.text == extra_end;
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens, const char* extra_end = nullptr) {
    auto tuple = make(ExprKind::kTuple);
    bool saw_comma = false;
    while (true) {
      if (!tuple->args.empty()) {
        if (!is_op(",")) break;
        next();
        saw_comma = true;
      }
      if (tuple_end(extra_end)) break;
      tuple->args.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    if (!saw_comma) {
      if (tuple->args.size() == 1) return std::move(tuple->args[0]);
      if (!explicit_parens) fail("Expected an expression, got " + describe(cur()));
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    DepthGuard g(this);
    auto e = parse_or();
    while (is_name("if")) {
      next();
      auto c = make(ExprKind::kCond);
      auto test = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        next();
        other = parse_expression();
      }
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }
  ExprPtr parse_or() {
    auto e = parse_and();
    while (is_name("or")) {
      next();
      auto n = make(ExprKind::kOr);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }
  ExprPtr parse_and() {
    auto e = parse_not();
    while (is_name("and")) {
      next();
      auto n = make(ExprKind::kAnd);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(this);
      next();
      auto n = make(ExprKind::kNot);
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    auto first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" || cur().text == ">" ||
           cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == Tok::kName && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::kCompare);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto n = make(ExprKind::kBinary);
    n->name = op;
    n->args.push_back(std::move(l));
    n->args.push_back(std::move(r));
    return n;
  }
  ExprPtr parse_math1() {
    auto e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      next();
      e = binary(op, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    auto e = parse_math2();
    if (!is_op("~")) return e;
    auto n = make(ExprKind::kConcat);
    n->args.push_back(std::move(e));
    while (is_op("~")) {
      next();
      n->args.push_back(parse_math2());
    }
    return n;
  }
  ExprPtr parse_math2() {
    auto e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      next();
      e = binary(op, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    auto e = parse_unary(true);
    while (is_op("**")) {
      next();
      e = binary("**", std::move(e), parse_unary(true));
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      auto n = make(is_op("-") ? ExprKind::kNeg : ExprKind::kPos);
      next();
      n->args.push_back(parse_unary(false));
      node = std::move(n);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }
  ExprPtr parse_primary() {
    const Token& t = cur();
    if (t.type == Tok::kName) {
      auto c = make(ExprKind::kConst);
      if (t.text == "true" || t.text == "True") c->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") c->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") c->value = Value::none();
      else {
        auto n = make(ExprKind::kName);
        n->name = t.text;
        next();
        return n;
      }
      next();
      return c;
    }
    if (t.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) {
        s += cur().text;
        next();
      }
      auto c = make(ExprKind::kConst);
      c->value = Value::string(std::move(s));
      return c;
    }
    if (t.type == Tok::kInt || t.type == Tok::kFloat) {
      auto c = make(ExprKind::kConst);
      try {
        c->value = t.type == Tok::kInt ? Value::integer(std::stoll(t.text)) : Value::floating(std::stod(t.text));
      } catch (const std::exception&) {
        fail("number literal out of range: " + t.text);
      }
      next();
      return c;
    }
    if (is_op("(")) {
      next();
      auto e = parse_tuple(true, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto l = make(ExprKind::kList);
      while (!is_op("]")) {
        if (!l->args.empty()) expect_op(",");
        if (is_op("]")) break;
        l->args.push_back(parse_expression());
      }
      next();
      return l;
    }
    if (is_op("{")) {
      next();
      auto d = make(ExprKind::kDict);
      while (!is_op("}")) {
        if (!d->args.empty()) expect_op(",");
        if (is_op("}")) break;
        d->args.push_back(parse_expression());
        expect_op(":");
        d->args.push_back(parse_expression());
      }
      next();
      return d;
    }
    fail("unexpected " + describe(t));
  }
  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        next();
        if (cur().type == Tok::kName) {
          auto n = make(ExprKind::kGetAttr);
          n->name = cur().text;
          next();
          n->args.push_back(std::move(node));
          node = std::move(n);
        } else if (cur().type == Tok::kInt) {
          auto n = make(ExprKind::kGetItem);
          auto idx = make(ExprKind::kConst);
          idx->value = Value::integer(std::stoll(cur().text));
          next();
          n->args.push_back(std::move(node));
          n->args.push_back(std::move(idx));
          node = std::move(n);
        } else {
          fail("expected name or number after '.'");
        }
      } else if (is_op("[")) {
        next();
        auto n = make(ExprKind::kGetItem);
        n->args.push_back(std::move(node));
        n->args.push_back(parse_subscript());
        expect_op("]");
        node = std::move(n);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }
  ExprPtr parse_subscript() {
    ExprPtr parts[3];
    bool slice = false;
    if (!is_op(":")) parts[0] = parse_expression();
    if (is_op(":")) {
      slice = true;
      next();
      if (!is_op("]") && !is_op(":")) parts[1] = parse_expression();
      if (is_op(":")) {
        next();
        if (!is_op("]")) parts[2] = parse_expression();
      }
    }
    if (!slice && is_op(",")) {  // obj[a, b]: a tuple index
      auto t = make(ExprKind::kTuple);
      t->args.push_back(std::move(parts[0]));
      while (is_op(",")) {
        next();
        if (is_op("]")) break;
        t->args.push_back(parse_expression());
      }
      return t;
    }
    if (!slice) return std::move(parts[0]);
    auto s = make(ExprKind::kSlice);
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }
  void parse_call_args(Expr* n) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*")) {
        next();
        n->dyn_args = parse_expression();
      } else if (is_op("**")) {
        next();
        n->dyn_kwargs = parse_expression();
      } else if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "=") {
        std::string k = cur().text;
        next();
        next();
        n->kwargs.emplace_back(k, parse_expression());
      } else {
        if (!n->kwargs.empty()) fail("positional argument follows keyword argument");
        n->args.push_back(parse_expression());
      }
    }
    next();
  }
  ExprPtr parse_call(ExprPtr callee) {
    auto n = make(ExprKind::kCall);
    n->args.push_back(std::move(callee));
    parse_call_args(n.get());
    return n;
  }
  std::string dotted_name() {
    std::string name = expect_name();
    while (is_op(".")) {
      next();
      name += "." + expect_name();
    }
    return name;
  }
  // `| f(args) | g ...`; with `node == nullptr` the chain applies to a value supplied later
  // (set blocks and filter blocks).
  ExprPtr parse_filter_chain(ExprPtr node, bool first_without_pipe = false) {
    bool first = true;
    while (is_op("|") || (first && first_without_pipe)) {
      if (!(first && first_without_pipe)) next();
      first = false;
      auto f = make(ExprKind::kFilter);
      f->name = dotted_name();
      f->args.push_back(std::move(node));
      if (is_op("(")) parse_call_args(f.get());
      node = std::move(f);
    }
    return node;
  }
  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter_chain(std::move(node));
      } else if (is_name("is")) {
        next();
        auto tst = make(ExprKind::kTest);
        if (is_name("not")) {
          next();
          tst->negated = true;
        }
        tst->name = dotted_name();
        tst->args.push_back(std::move(node));
        const Token& c = cur();
        if (is_op("(")) {
          parse_call_args(tst.get());
        } else if ((c.type == Tok::kName || c.type == Tok::kString || c.type == Tok::kInt || c.type == Tok::kFloat ||
                    is_op("[") || is_op("{")) &&
                   !(c.type == Tok::kName && (c.text == "else" || c.text == "or" || c.text == "and"))) {
          if (is_name("is")) fail("You cannot chain multiple tests with is");
          tst->args.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(tst);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_hint_ = 0;  // break/continue are checked at run time
};

}  // namespace

Program parse(const std::vector<Token>& tokens) { return Parser(tokens).run(); }

}  // namespace ds::text::jinja
