"""The checks, one module a family; each check is a pure function returning a Finding.

    data      the corpus: clean features, labels, CTC feasibility, normalization
    input     any model and dataset: component contracts, the model input
    model     the model on real batches: forward, loss at init, gradients, batch sizes, modalities
    training  optimisation: the smoke run and the overfit run
    distill   distillation: teacher, teacher competence, distillation loss, frozen teacher
    shift     the shift between splits

harness/suite.py is the table that names them and says how each runs on a HarnessContext.
"""
