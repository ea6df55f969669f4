"""Amazon Personalize's filter expression language: a tokenizer and a recursive-descent parser to a tree.

A filter is created once and applied to many requests, so every mistake that can be found
from the expression and the dataset group's schema is reported at creation, with the column
where it is and why, instead of surfacing as an empty list at request time. The expression
becomes a tree of frozen nodes; a placeholder (``$GENRES``) is a leaf of that tree, and the
values bound to it at request time replace the leaf with literal values, never with text to
parse again, so no filterValues can change what an expression means.

Grammar (keywords, ``ItemID``/``UserID`` and dataset names in any case; field names as in the schema):

    filter      := expression ("|" expression)*
    expression  := ("INCLUDE" | "EXCLUDE") ("ItemID" | "UserID") "WHERE" disjunction
                   ["IF" condition ("AND" condition)*]
    disjunction := conjunction ("OR" conjunction)*
    conjunction := term ("AND" term)*
    term        := "(" disjunction ")" | condition
    condition   := DATASET "." FIELD (["NOT"] "IN" values | ("=" | "!=" | "<" | "<=" | ">" | ">=") value)
    values      := "(" value ("," value)* ")" | PLACEHOLDER | "CurrentItem" "." FIELD
    value       := STRING | NUMBER | PLACEHOLDER | "CurrentItem" "." FIELD | "*"

AND binds tighter than OR. The parser resolves every ``Dataset.FIELD`` against the schema
(the dataset and the field must exist); ``schema.check_expressions`` then applies the
rules that Personalize documents for what may be combined with what.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.personalize.filters.schema import FieldSpec, Schema

MAX_EXPRESSION_LENGTH = 2500
MAX_NESTING = 32  # parenthesized groups; bounds the parser's recursion
DATASETS = {"items": "Items", "interactions": "Interactions", "users": "Users"}
REFERENCES = {"currentuser": "CurrentUser", "currentitem": "CurrentItem"}
SCHEMA_KEY = {"Items": "ITEMS", "Interactions": "INTERACTIONS", "Users": "USERS", "CurrentUser": "USERS"}
SCHEMA_KEY["CurrentItem"] = "ITEMS"
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*")
    |(?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<placeholder>\$[A-Za-z0-9_]*)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|!=|=|<|>)
    |(?P<punct>[().,|*])""",
    re.X | re.S,
)


class FilterExpressionError(ValueError):
    """An expression that cannot be a filter: where (0-based ``position``) and why (``reason``)."""

    def __init__(self, reason: str, expression: str, position: int):
        self.reason, self.expression, self.position = reason, expression, position
        line = expression.replace("\n", " ").replace("\t", " ")
        super().__init__(f"filter expression, column {position + 1}: {reason}\n  {line}\n  {' ' * position}^")


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, placeholder, word, op, punct, end
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


# The tree. Positions point into the expression for errors and take no part in equality.
@dataclass(frozen=True)
class Field:
    dataset: str  # Items, Interactions, Users, CurrentUser or CurrentItem
    name: str  # the schema's spelling
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.dataset}.{self.name}"


@dataclass(frozen=True)
class Literal:
    value: str | float
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if isinstance(self.value, str):
            return '"' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(int(self.value)) if float(self.value).is_integer() else repr(self.value)


@dataclass(frozen=True)
class Placeholder:
    name: str
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"${self.name}"


Value = Literal | Placeholder | Field


@dataclass(frozen=True)
class Condition:
    field: Field
    op: str  # IN, NOT IN or one of COMPARISONS
    values: tuple[Value, ...]
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.op in ("IN", "NOT IN"):
            single = len(self.values) == 1 and isinstance(self.values[0], Field)
            values = str(self.values[0]) if single else f"({', '.join(map(str, self.values))})"
            return f"{self.field} {self.op} {values}"
        return f"{self.field} {self.op} {self.values[0]}"


@dataclass(frozen=True)
class Junction:
    op: str  # AND or OR
    parts: tuple[Condition | Junction, ...]

    def __str__(self) -> str:
        inner = [
            f"({p})" if isinstance(p, Junction) and p.op == "OR" and self.op == "AND" else str(p) for p in self.parts
        ]
        return f" {self.op} ".join(inner)


Node = Condition | Junction


@dataclass(frozen=True)
class Expression:
    action: str  # INCLUDE or EXCLUDE
    target: str  # ItemID or UserID
    where: Node
    when: tuple[Condition, ...] = ()  # the IF conditions on CurrentUser, all of which must hold
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        text = f"{self.action} {self.target} WHERE {self.where}"
        return text + (f" IF {' AND '.join(map(str, self.when))}" if self.when else "")

    @property
    def dataset(self) -> str:
        return next(conditions(self.where)).field.dataset


def conditions(node: Node) -> Iterator[Condition]:
    if isinstance(node, Condition):
        yield node
    else:
        for part in node.parts:
            yield from conditions(part)


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            reason = "unterminated string" if text[pos] == '"' else f"unexpected character {text[pos]!r}"
            if text[pos] == "'":
                reason += "; text values take double quotes"
            raise FilterExpressionError(reason, text, pos)
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def unquote(token_text: str) -> str:
    """A string token's value: backslash escapes the next character."""
    return re.sub(r"\\(.)", r"\1", token_text[1:-1], flags=re.S)


def parse_expression(text: str, schema: Schema) -> tuple[Expression, ...]:
    """The pipe-separated expressions of a filter, names resolved in ``schema``; raise FilterExpressionError."""
    if not isinstance(text, str) or not text.strip():
        raise FilterExpressionError("the expression is empty", str(text or ""), 0)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterExpressionError(f"longer than {MAX_EXPRESSION_LENGTH} characters", text[:80], 0)
    return _Parser(text, schema).parse()


class _Parser:
    def __init__(self, text: str, schema: Schema):
        self.text, self.schema = text, schema
        self.tokens, self.at, self.depth = tokenize(text), 0, 0

    def error(self, reason: str, pos: int | None = None) -> FilterExpressionError:
        return FilterExpressionError(reason, self.text, self.peek.pos if pos is None else pos)

    @property
    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += token.kind != "end"
        return token

    def accept(self, word_or_punct: str) -> Token | None:
        token = self.peek
        if token.upper == word_or_punct or (token.kind in ("punct", "op") and token.text == word_or_punct):
            return self.take()
        return None

    def expect(self, word_or_punct: str, where: str) -> Token:
        token = self.accept(word_or_punct)
        if token is None:
            found = repr(self.peek.text) if self.peek.kind != "end" else "the end"
            raise self.error(f"expected {word_or_punct} {where}, found {found}")
        return token

    def parse(self) -> tuple[Expression, ...]:
        expressions = [self.expression()]
        while self.accept("|"):
            expressions.append(self.expression())
        if self.peek.kind != "end":
            raise self.error(f"unexpected {self.peek.text!r}; expressions are joined with |")
        return tuple(expressions)

    def expression(self) -> Expression:
        start = self.peek
        action = start.upper
        if action not in ("INCLUDE", "EXCLUDE"):
            raise self.error("an expression starts with INCLUDE or EXCLUDE")
        self.take()
        target_token = self.take()
        target = {"ITEMID": "ItemID", "USERID": "UserID"}.get(target_token.upper)
        if target_token.upper == "ACTIONID":
            raise self.error("ActionID filters action recommendations, which Airsight does not serve", target_token.pos)
        if target is None:
            raise self.error(f"expected ItemID or UserID after {action}", target_token.pos)
        self.expect("WHERE", f"after {target}")
        where = self.disjunction()
        when: list[Condition] = []
        if_token = self.accept("IF")
        if if_token:
            if target == "UserID":
                raise self.error("IF conditions on CurrentUser apply to item filters only", if_token.pos)
            when.append(self.condition(in_if=True))
            while self.accept("AND"):
                when.append(self.condition(in_if=True))
            if self.peek.upper == "OR":
                raise self.error("an IF condition is extended with AND only")
        return Expression(action, target, where, tuple(when), start.pos)

    def disjunction(self) -> Node:
        parts = [self.conjunction()]
        while self.accept("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Junction("OR", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.term()]
        while self.accept("AND"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Junction("AND", tuple(parts))

    def term(self) -> Node:
        start = self.accept("(")
        if start is None:
            return self.condition(in_if=False)
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"groups nest deeper than {MAX_NESTING}", start.pos)
        node = self.disjunction()
        self.expect(")", "to close the group")
        self.depth -= 1
        return node

    def condition(self, in_if: bool) -> Condition:
        start = self.peek.pos
        subject = self.field(in_if=in_if)
        if self.accept("NOT"):
            self.expect("IN", "after NOT")
            op = "NOT IN"
        elif self.accept("IN"):
            op = "IN"
        elif self.peek.kind == "op":
            op = self.take().text
        else:
            raise self.error(f"expected IN, NOT IN or a comparison after {subject}")
        if op in COMPARISONS:
            values: tuple[Value, ...] = (self.value(),)
        elif self.accept("("):
            values = (self.value(),)
            while self.accept(","):
                values += (self.value(),)
            self.expect(")", "to close the list of values")
        elif self.peek.kind == "placeholder" or self.peek.upper == "CURRENTITEM":
            values = (self.value(),)
        else:
            raise self.error(f"expected a parenthesized list of values after {op}")
        return Condition(subject, op, values, start)

    def field(self, in_if: bool, dataset_token: Token | None = None) -> Field:
        token = dataset_token or self.take()
        if token.kind != "word":
            raise self.error("expected a dataset field such as Items.GENRES", token.pos)
        name = token.text.lower()
        dataset = DATASETS.get(name) or REFERENCES.get(name)
        if dataset is None:
            known = "Items, Interactions, Users" + (", CurrentUser" if in_if else "")
            raise self.error(f"unknown dataset {token.text!r}; use one of {known}", token.pos)
        if in_if and dataset != "CurrentUser":
            raise self.error("an IF condition tests CurrentUser fields, such as CurrentUser.AGE", token.pos)
        if not in_if and dataset == "CurrentUser":
            raise self.error("CurrentUser is tested in a final IF condition, not in WHERE", token.pos)
        if not in_if and dataset == "CurrentItem" and dataset_token is None:
            raise self.error(
                "CurrentItem is a value to compare with, such as Items.PRICE < CurrentItem.PRICE", token.pos
            )
        self.expect(".", f"after {dataset}")
        name_token = self.take()
        if name_token.kind != "word":
            raise self.error(f"expected a field name after {dataset}.", name_token.pos)
        fields = self.schema.get(SCHEMA_KEY[dataset])
        if fields is None:
            raise self.error(f"the dataset group has no {SCHEMA_KEY[dataset]} dataset", token.pos)
        spec = _lookup(fields, name_token.text)
        if spec is None:
            raise self.error(f"{dataset} has no field {name_token.text!r}; it has {sorted(fields)}", name_token.pos)
        return Field(dataset, spec.name, token.pos)

    def value(self) -> Value:
        token = self.take()
        if token.kind == "string":
            return Literal(unquote(token.text), token.pos)
        if token.kind == "number":
            return Literal(float(token.text), token.pos)
        if token.kind == "punct" and token.text == "*":
            return Literal("*", token.pos)
        if token.kind == "placeholder":
            if not 1 < len(token.text) <= 51:
                raise self.error("a placeholder is $ and 1 to 50 letters, digits or _", token.pos)
            return Placeholder(token.text[1:], token.pos)
        if token.upper == "CURRENTITEM":
            return self.field(in_if=False, dataset_token=token)
        found = repr(token.text) if token.kind != "end" else "the end"
        raise self.error(
            f'expected a value ("text", a number, a $PLACEHOLDER or CurrentItem.FIELD), found {found}', token.pos
        )


def _lookup(fields: dict[str, FieldSpec], name: str) -> FieldSpec | None:
    if name in fields:
        return fields[name]
    matches = [spec for key, spec in fields.items() if key.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None
