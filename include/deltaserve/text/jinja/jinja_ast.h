// Tokens and syntax tree of the Jinja engine (text/jinja.h): the lexer follows jinja2's lexer
// (trim_blocks, lstrip_blocks, `-`/`+` whitespace control, newline normalisation, dropped trailing
// newline), the parser follows jinja2's grammar and operator precedence. Internal to the engine.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "deltaserve/text/jinja/jinja_value.h"

namespace ds::text::jinja {

enum class Tok { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEnd };

struct Token {
  Tok type;
  std::string text;  // data text, name, decoded string literal, operator, or number spelling
  int line = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws TemplateError on malformed input (unterminated tag or comment, bad character).
std::vector<Token> lex(const std::string& source, const LexOptions& opts);

enum class ExprKind {
  kConst, kName, kList, kTuple, kDict, kGetAttr, kGetItem, kSlice, kCall, kFilter, kTest,
  kNot, kNeg, kPos, kBinary, kCompare, kAnd, kOr, kCond, kConcat,
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  Value value;                 // kConst
  std::string name;            // kName / kGetAttr attr / kFilter, kTest name / kBinary op
  std::vector<ExprPtr> args;   // children (see parser for each kind's layout); may hold nullptr (slices)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall / kFilter / kTest keyword args
  std::vector<std::string> ops;  // kCompare: one op per args[i+1]
  ExprPtr dyn_args, dyn_kwargs;  // *args / **kwargs in calls
  bool negated = false;          // kTest under `is not`
};

enum class StmtKind { kText, kPrint, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue, kFilterBlock, kWith, kCallBlock };

struct Stmt {
  explicit Stmt(StmtKind k) : kind(k) {}
  StmtKind kind;
  int line = 0;
  std::string text;                // kText
  ExprPtr expr;                    // kPrint value, kIf cond, kFor iter, kSet value, kFilterBlock filter chain
  ExprPtr cond;                    // kFor `if` filter
  std::vector<Stmt> body, else_body;
  std::vector<std::string> targets;  // kFor loop vars, kSet names, kMacro params, kWith names
  std::string ns_attr;               // kSet / kSetBlock onto `ns.attr` (targets[0] is ns)
  std::vector<ExprPtr> defaults;     // kMacro param defaults (nullptr when none), kWith values
  bool recursive = false;            // kFor
};

struct Program {
  std::vector<Stmt> body;
};

// Throws TemplateError with a line number on syntax errors.
Program parse(const std::vector<Token>& tokens);

}  // namespace ds::text::jinja
