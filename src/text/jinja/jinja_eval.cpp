// Tree-walking evaluator of the Jinja engine, and the public JinjaTemplate API (text/jinja.h).
// Scoping follows jinja2: each for-loop iteration and each macro call gets a fresh frame that
// reads through to its parent; `set` writes to the current frame; macros see the template's
// top-level variables at call time.
// GCC 12 reports a false -Wrestrict on `"literal" + std::string` (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"
#include <unordered_map>

#include "deltaserve/text/jinja/jinja.h"
#include "deltaserve/text/jinja/jinja_ast.h"
#include "deltaserve/text/jinja/jinja_builtins.h"

namespace ds::text {
namespace jinja {
namespace {

struct LimitError : TemplateError {
  using TemplateError::TemplateError;
};

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
  const Value* lookup(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { kNormal, kBreak, kContinue };

class Evaluator {
 public:
  Evaluator(const JinjaLimits& limits, FramePtr root) : limits_(limits), root_(std::move(root)) {}

  void exec_body(const std::vector<Stmt>& body, const FramePtr& f, std::string& out, Flow& flow) {
    for (const auto& s : body) {
      exec(s, f, out, flow);
      if (flow != Flow::kNormal) return;
    }
  }

 private:
  void step() {
    if (++steps_ > limits_.max_steps)
      throw LimitError("template exceeded its step budget (" + std::to_string(limits_.max_steps) +
                       " steps); it may loop forever");
  }
  void append(std::string& out, const std::string& s) {
    out += s;
    if (out.size() > limits_.max_output_bytes)
      throw LimitError("template output exceeded " + std::to_string(limits_.max_output_bytes) + " bytes");
  }

  void exec(const Stmt& s, const FramePtr& f, std::string& out, Flow& flow) {
    step();
    switch (s.kind) {
      case StmtKind::kText: append(out, s.text); return;
      case StmtKind::kPrint: {
        Value v = eval(*s.expr, f);
        append(out, py_str(v));
        return;
      }
      case StmtKind::kIf:
        if (eval(*s.expr, f).truthy()) exec_body(s.body, f, out, flow);
        else exec_body(s.else_body, f, out, flow);
        return;
      case StmtKind::kFor: exec_for(s, f, out); return;
      case StmtKind::kSet: assign(s, eval(*s.expr, f), f); return;
      case StmtKind::kSetBlock: {
        std::string buf;
        Flow inner = Flow::kNormal;
        exec_body(s.body, f, buf, inner);
        Value v = Value::string(std::move(buf));
        if (s.expr) v = apply_chain(*s.expr, v, f);
        assign(s, v, f);
        return;
      }
      case StmtKind::kMacro: f->vars[s.text] = make_macro(s, f); return;
      case StmtKind::kBreak:
      case StmtKind::kContinue:
        if (loop_depth_ == 0) throw TemplateError("'break'/'continue' outside of a loop");
        flow = s.kind == StmtKind::kBreak ? Flow::kBreak : Flow::kContinue;
        return;
      case StmtKind::kFilterBlock: {
        std::string buf;
        exec_body(s.body, f, buf, flow);
        append(out, py_str(apply_chain(*s.expr, Value::string(std::move(buf)), f)));
        return;
      }
      case StmtKind::kWith: {
        auto inner = std::make_shared<Frame>();
        inner->parent = f;
        for (size_t i = 0; i < s.targets.size(); ++i) inner->vars[s.targets[i]] = eval(*s.defaults[i], f);
        exec_body(s.body, inner, out, flow);
        return;
      }
      case StmtKind::kCallBlock: throw TemplateError("call blocks are not supported");
    }
  }

  void assign(const Stmt& s, const Value& v, const FramePtr& f) {
    if (!s.ns_attr.empty()) {
      const Value* ns = f->lookup(s.targets[0]);
      if (!ns || !ns->is_namespace()) throw TemplateError("cannot assign attribute on non-namespace object");
      if (!s.ns_attr.empty() && s.ns_attr[0] == '_')
        throw TemplateError("Chat templates cannot store underscore-prefixed attributes on a namespace");
      ns->mutable_ns().set(s.ns_attr, v);
      return;
    }
    if (s.targets.size() == 1) {
      f->vars[s.targets[0]] = v;
      return;
    }
    auto parts = unpack(v, s.targets.size());
    for (size_t i = 0; i < parts.size(); ++i) f->vars[s.targets[i]] = parts[i];
  }

  std::vector<Value> unpack(const Value& v, size_t n) {
    std::vector<Value> parts = iterate(v);
    if (v.is_undefined()) raise_undefined(v);
    if (parts.size() != n)
      throw TemplateError(parts.size() < n ? "not enough values to unpack (expected " + std::to_string(n) + ", got " +
                                                 std::to_string(parts.size()) + ")"
                                           : "too many values to unpack (expected " + std::to_string(n) + ")");
    return parts;
  }

  void exec_for(const Stmt& s, const FramePtr& f, std::string& out) {
    if (s.recursive) throw TemplateError("recursive for-loops are not supported");
    Value seq = eval(*s.expr, f);
    std::vector<Value> all = iterate(seq);
    std::vector<Value> items;
    if (s.cond) {
      // The loop filter sees each item bound to the targets, in a scratch frame.
      for (auto& item : all) {
        auto scratch = std::make_shared<Frame>();
        scratch->parent = f;
        bind_targets(s, item, scratch);
        if (eval(*s.cond, scratch).truthy()) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) {
      Flow flow = Flow::kNormal;
      exec_body(s.else_body, f, out, flow);
      return;
    }
    ++loop_depth_;
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      step();
      auto inner = std::make_shared<Frame>();
      inner->parent = f;
      Dict loop;
      loop.entries.reserve(12);
      loop.set("index0", Value::integer(i));
      loop.set("index", Value::integer(i + 1));
      loop.set("revindex", Value::integer(n - i));
      loop.set("revindex0", Value::integer(n - i - 1));
      loop.set("first", Value::boolean(i == 0));
      loop.set("last", Value::boolean(i == n - 1));
      loop.set("length", Value::integer(n));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      if (i > 0) loop.set("previtem", items[i - 1]);
      if (i + 1 < n) loop.set("nextitem", items[i + 1]);
      loop.set("cycle", Value::callable("cycle", [i](CallArgs& a) {
                 if (a.pos.empty()) throw TemplateError("no items for cycling given");
                 return a.pos[static_cast<size_t>(i) % a.pos.size()];
               }));
      inner->vars["loop"] = Value::dict(std::move(loop));
      bind_targets(s, items[i], inner);
      Flow flow = Flow::kNormal;
      exec_body(s.body, inner, out, flow);
      if (flow == Flow::kBreak) break;
    }
    --loop_depth_;
  }

  void bind_targets(const Stmt& s, const Value& item, const FramePtr& f) {
    if (s.targets.size() == 1) {
      f->vars[s.targets[0]] = item;
      return;
    }
    auto parts = unpack(item, s.targets.size());
    for (size_t k = 0; k < parts.size(); ++k) f->vars[s.targets[k]] = parts[k];
  }

  Value make_macro(const Stmt& s, const FramePtr& defining_frame) {
    const Stmt* def = &s;
    // The macro is stored in the frame it closes over, so it holds that frame weakly (no cycle);
    // a macro that outlives its frame (stored into a namespace) falls back to the root frame.
    std::weak_ptr<Frame> weak = defining_frame;
    return Value::callable(s.text, [this, def, weak](CallArgs& a) -> Value {
      FramePtr closure = weak.lock();
      if (!closure) closure = root_;
      if (++call_depth_ > limits_.max_call_depth) {
        --call_depth_;
        throw LimitError("macro '" + def->text + "' recursed deeper than " + std::to_string(limits_.max_call_depth) +
                         " calls");
      }
      struct Unwind {
        int& d;
        ~Unwind() { --d; }
      } unwind{call_depth_};
      if (a.pos.size() > def->targets.size())
        throw TemplateError("macro '" + def->text + "' takes not more than " + std::to_string(def->targets.size()) +
                            " argument(s)");
      auto frame = std::make_shared<Frame>();
      frame->parent = closure;
      for (const auto& [k, v] : a.kw) {
        bool known = false;
        for (const auto& p : def->targets) known |= p == k;
        if (!known) throw TemplateError("macro '" + def->text + "' takes no keyword argument '" + k + "'");
      }
      for (size_t i = 0; i < def->targets.size(); ++i) {
        const std::string& p = def->targets[i];
        if (i < a.pos.size()) {
          frame->vars[p] = a.pos[i];
        } else if (const Value* kv = a.kwarg(p)) {
          frame->vars[p] = *kv;
        } else if (def->defaults[i]) {
          frame->vars[p] = eval(*def->defaults[i], frame);
        } else {
          frame->vars[p] = Value::undefined("parameter '" + p + "' was not provided");
        }
      }
      std::string buf;
      Flow flow = Flow::kNormal;
      int saved_loops = loop_depth_;
      loop_depth_ = 0;
      exec_body(def->body, frame, buf, flow);
      loop_depth_ = saved_loops;
      return Value::string(std::move(buf));
    });
  }

  // Applies a filter chain whose innermost operand is nullptr to `v` (set blocks, filter blocks).
  Value apply_chain(const Expr& chain, const Value& v, const FramePtr& f) {
    Value base = chain.args[0] ? apply_chain(*chain.args[0], v, f) : v;
    CallArgs a = eval_args(chain, f, 1);
    return apply_filter(chain.name, base, a);
  }

  CallArgs eval_args(const Expr& e, const FramePtr& f, size_t skip) {
    CallArgs a;
    for (size_t i = skip; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i], f));
    for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v, f));
    if (e.dyn_args) {
      Value extra = eval(*e.dyn_args, f);
      for (auto& x : iterate(extra)) a.pos.push_back(x);
    }
    if (e.dyn_kwargs) {
      Value extra = eval(*e.dyn_kwargs, f);
      if (!extra.is_dict()) throw TemplateError("argument after ** must be a mapping");
      for (const auto& [k, v] : extra.map().entries) a.kw.emplace_back(k, v);
    }
    return a;
  }

  Value eval(const Expr& e, const FramePtr& f) {
    step();
    switch (e.kind) {
      case ExprKind::kConst: return e.value;
      case ExprKind::kName: {
        const Value* v = f->lookup(e.name);
        return v ? *v : Value::undefined("'" + e.name + "' is undefined");
      }
      case ExprKind::kList:
      case ExprKind::kTuple: {
        List items;
        for (const auto& a : e.args) items.push_back(eval(*a, f));
        return Value::list(std::move(items), e.kind == ExprKind::kTuple);
      }
      case ExprKind::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i], f);
          if (!k.is_string()) throw TemplateError("only string keys are supported in dict literals");
          d.set(k.str(), eval(*e.args[i + 1], f));
        }
        return Value::dict(std::move(d));
      }
      case ExprKind::kGetAttr: return get_attr(eval(*e.args[0], f), e.name);
      case ExprKind::kGetItem: {
        Value obj = eval(*e.args[0], f);
        if (e.args[1]->kind == ExprKind::kSlice) return slice(obj, *e.args[1], f);
        return get_item(obj, eval(*e.args[1], f));
      }
      case ExprKind::kSlice: throw TemplateError("slice outside of a subscript");
      case ExprKind::kCall: {
        Value callee = eval(*e.args[0], f);
        CallArgs a = eval_args(e, f, 1);
        if (callee.is_undefined()) raise_undefined(callee);
        if (!callee.is_callable()) throw TemplateError("'" + callee.type_name() + "' object is not callable");
        return callee.call(a);
      }
      case ExprKind::kFilter: {
        Value v = eval(*e.args[0], f);
        CallArgs a = eval_args(e, f, 1);
        return apply_filter(e.name, v, a);
      }
      case ExprKind::kTest: {
        Value v = eval(*e.args[0], f);
        CallArgs a = eval_args(e, f, 1);
        bool r = apply_test(e.name, v, a);
        return Value::boolean(e.negated ? !r : r);
      }
      case ExprKind::kNot: return Value::boolean(!eval(*e.args[0], f).truthy());
      case ExprKind::kNeg:
      case ExprKind::kPos: {
        Value v = eval(*e.args[0], f);
        if (v.is_undefined()) raise_undefined(v);
        if (!v.is_number()) throw TemplateError("bad operand type for unary " + std::string(e.kind == ExprKind::kNeg ? "-" : "+") + ": '" + v.type_name() + "'");
        if (e.kind == ExprKind::kPos) return v.is_bool() ? Value::integer(v.as_int()) : v;
        if (v.is_float()) return Value::floating(-v.as_float());
        return Value::integer(-v.as_int());
      }
      case ExprKind::kBinary: {
        Value a = eval(*e.args[0], f);
        Value b = eval(*e.args[1], f);
        return binary_op(e.name, a, b);
      }
      case ExprKind::kConcat: {
        std::string s;
        for (const auto& a : e.args) {
          s += py_str(eval(*a, f));
          check_string_size(s.size());
        }
        return Value::string(std::move(s));
      }
      case ExprKind::kCompare: {
        Value left = eval(*e.args[0], f);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1], f);
          const std::string& op = e.ops[i];
          bool r;
          if (op == "==") r = py_equal(left, right);
          else if (op == "!=") r = !py_equal(left, right);
          else if (op == "in") r = contains(right, left);
          else if (op == "notin") r = !contains(right, left);
          else {
            if (left.is_undefined()) raise_undefined(left);
            if (right.is_undefined()) raise_undefined(right);
            int c = py_compare(left, right);
            r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
          }
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case ExprKind::kAnd: {
        Value a = eval(*e.args[0], f);
        return a.truthy() ? eval(*e.args[1], f) : a;
      }
      case ExprKind::kOr: {
        Value a = eval(*e.args[0], f);
        return a.truthy() ? a : eval(*e.args[1], f);
      }
      case ExprKind::kCond: {
        if (eval(*e.args[0], f).truthy()) return eval(*e.args[1], f);
        if (e.args[2]) return eval(*e.args[2], f);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return Value();
  }

  Value slice(const Value& obj, const Expr& sl, const FramePtr& f) {
    auto bound = [&](int i) -> std::optional<int64_t> {
      if (!sl.args[i]) return std::nullopt;
      Value v = eval(*sl.args[i], f);
      if (v.is_none()) return std::nullopt;
      if (!v.is_int() && !v.is_bool()) throw TemplateError("slice indices must be integers or None");
      return v.as_int();
    };
    std::optional<int64_t> start = bound(0), stop = bound(1), stepv = bound(2);
    int64_t st = stepv.value_or(1);
    if (st == 0) throw TemplateError("slice step cannot be zero");
    auto pick = [&](int64_t len, std::vector<int64_t>& idx) {
      auto norm = [&](std::optional<int64_t> b, int64_t dflt, int64_t lo, int64_t hi) {
        if (!b) return dflt;
        int64_t x = *b < 0 ? *b + len : *b;
        return std::clamp(x, lo, hi);
      };
      if (st > 0) {
        int64_t a = norm(start, 0, 0, len), b = norm(stop, len, 0, len);
        for (int64_t k = a; k < b; k += st) idx.push_back(k);
      } else {
        int64_t a = norm(start, len - 1, -1, len - 1), b = norm(stop, -1, -1, len - 1);
        for (int64_t k = a; k > b; k += st) idx.push_back(k);
      }
    };
    std::vector<int64_t> idx;
    if (obj.is_string()) {
      std::u32string u = utf8_decode(obj.str());
      pick(static_cast<int64_t>(u.size()), idx);
      std::u32string r;
      for (int64_t k : idx) r += u[k];
      return Value::string(utf8_encode(r));
    }
    if (obj.is_list()) {
      pick(static_cast<int64_t>(obj.items().size()), idx);
      List r;
      for (int64_t k : idx) r.push_back(obj.items()[k]);
      return Value::list(std::move(r), obj.is_tuple());
    }
    if (obj.is_undefined()) raise_undefined(obj);
    throw TemplateError("'" + obj.type_name() + "' object is not subscriptable");
  }

  const JinjaLimits& limits_;
  FramePtr root_;
  size_t steps_ = 0;
  int call_depth_ = 0;
  int loop_depth_ = 0;
};

// vLLM's _detect_content_format: loops over `<message var>.content` where the message var is
// the target of a loop over `messages` (or a variable assigned from it), plus the fallback for
// loops over a plain `content` variable (vllm#42660).
struct ContentScan {
  std::vector<std::string> message_vars;
  std::vector<std::string> messages_aliases{"messages"};
  bool found = false;

  static const Expr* strip(const Expr* e) {
    while (e && (e->kind == ExprKind::kFilter || e->kind == ExprKind::kTest ||
                 (e->kind == ExprKind::kGetItem && e->args[1]->kind == ExprKind::kSlice)))
      e = e->args[0].get();
    return e;
  }
  static bool is_name(const Expr* e, const std::vector<std::string>& names) {
    e = strip(e);
    if (!e || e->kind != ExprKind::kName) return false;
    for (const auto& n : names)
      if (n == e->name) return true;
    return false;
  }
  static bool is_content_of(const Expr* e, const std::vector<std::string>& vars) {
    e = strip(e);
    if (!e) return false;
    const Expr* base = nullptr;
    if (e->kind == ExprKind::kGetAttr && e->name == "content") base = e->args[0].get();
    if (e->kind == ExprKind::kGetItem && e->args[1]->kind == ExprKind::kConst && e->args[1]->value.is_string() &&
        e->args[1]->value.str() == "content")
      base = e->args[0].get();
    return base && base->kind == ExprKind::kName &&
           std::find(vars.begin(), vars.end(), base->name) != vars.end();
  }
  void collect(const std::vector<Stmt>& body, int pass) {
    for (const auto& s : body) {
      if (pass == 0 && s.kind == StmtKind::kSet && s.ns_attr.empty() && s.targets.size() == 1 &&
          is_name(s.expr.get(), messages_aliases) &&
          std::find(messages_aliases.begin(), messages_aliases.end(), s.targets[0]) == messages_aliases.end())
        messages_aliases.push_back(s.targets[0]);
      if (pass == 1 && s.kind == StmtKind::kFor && s.targets.size() == 1 && is_name(s.expr.get(), messages_aliases))
        message_vars.push_back(s.targets[0]);
      if (pass == 2 && s.kind == StmtKind::kFor) {
        const Expr* it = s.expr.get();
        if (is_content_of(it, message_vars) || (it->kind == ExprKind::kName && it->name == "content")) found = true;
      }
      collect(s.body, pass);
      collect(s.else_body, pass);
    }
  }
};

}  // namespace
}  // namespace jinja

Result<JinjaTemplate> JinjaTemplate::compile(const std::string& source) {
  try {
    auto tokens = jinja::lex(source, jinja::LexOptions{});
    auto program = std::make_shared<jinja::Program>(jinja::parse(tokens));
    JinjaTemplate t;
    t.program_ = std::move(program);
    t.source_ = source;
    return t;
  } catch (const jinja::TemplateError& e) {
    return invalid_argument(std::string("chat template: ") + e.what());
  } catch (const std::exception& e) {
    return invalid_argument(std::string("chat template: ") + e.what());
  }
}

Result<std::string> JinjaTemplate::render(const nlohmann::ordered_json& vars, const JinjaLimits& limits) const {
  if (!program_) return invalid_argument("chat template: not compiled");
  if (!vars.is_object()) return invalid_argument("chat template: variables must be a JSON object");
  try {
    jinja::set_build_limits({limits.max_output_bytes, limits.max_list_items});
    jinja::NamespaceArena namespaces;
    auto globals = std::make_shared<jinja::Frame>();
    jinja::Dict g;
    jinja::install_globals(g);
    for (auto& [k, v] : g.entries) globals->vars[k] = v;
    for (const auto& [k, v] : vars.items()) globals->vars[k] = jinja::Value::from_json(v);
    auto root = std::make_shared<jinja::Frame>();
    root->parent = globals;
    jinja::Evaluator ev(limits, root);
    std::string out;
    jinja::Flow flow = jinja::Flow::kNormal;
    ev.exec_body(program_->body, root, out, flow);
    return out;
  } catch (const jinja::LimitError& e) {
    return resource_exhausted(std::string("chat template: ") + e.what());
  } catch (const jinja::TemplateError& e) {
    return invalid_argument(e.what());
  } catch (const std::bad_alloc&) {
    return resource_exhausted("chat template: out of memory while rendering");
  } catch (const std::exception& e) {
    return invalid_argument(std::string("chat template: ") + e.what());
  }
}

bool JinjaTemplate::iterates_message_content() const {
  if (!program_) return false;
  jinja::ContentScan scan;
  // Aliases of `messages` may chain (a = messages; b = a), so repeat the first pass to a fixpoint.
  for (size_t n = 0; n != scan.messages_aliases.size();) {
    n = scan.messages_aliases.size();
    scan.collect(program_->body, 0);
  }
  scan.collect(program_->body, 1);
  scan.collect(program_->body, 2);
  return scan.found;
}

}  // namespace ds::text
