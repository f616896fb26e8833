package console

// FiguresOf exposes figuresOf to the black-box tests.
var FiguresOf = figuresOf
