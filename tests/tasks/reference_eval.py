"""An evaluator for + - * / expressions written for the tests, independent of r1lab's own.

The modules' gold answers are checked against this, so a bug in a module's evaluator cannot
vouch for itself. Recursive descent over integer literals, exact with Fraction.
"""

import re
from fractions import Fraction


def evaluate(text: str) -> Fraction:
    """The exact value of `text`, with the usual precedence and left associativity."""
    tokens = re.findall(r"\d+|[-+*/()]", text)
    assert "".join(tokens) == text.replace(" ", ""), f"unexpected characters in {text!r}"
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else None

    def take():
        nonlocal position
        position += 1
        return tokens[position - 1]

    def factor():
        token = take()
        if token == "(":
            inner = expression()
            assert take() == ")"
            return inner
        return Fraction(int(token))

    def term():
        result = factor()
        while peek() in ("*", "/"):
            result = result * factor() if take() == "*" else result / factor()
        return result

    def expression():
        result = term()
        while peek() in ("+", "-"):
            result = result + term() if take() == "+" else result - term()
        return result

    result = expression()
    assert position == len(tokens), f"trailing tokens in {text!r}"
    return result


def literals(text: str) -> list[int]:
    """The integer literals of `text`, in order."""
    return [int(x) for x in re.findall(r"\d+", text)]
