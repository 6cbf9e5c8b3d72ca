"""Stand-ins for what cannot run on Linux without the internet (DESIGN.md, conventions).

Each one speaks the same Python API or wire format as the real thing, so the code
under test cannot tell the difference except by what the test sets up.
"""
