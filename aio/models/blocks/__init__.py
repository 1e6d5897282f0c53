"""Building blocks of the networks, one module per kind: ``norm``, ``attention``, ``ffn``, ``gates``, ``lora``,
``dfrg``, ``csff``, ``sampling`` (patch embed, down/upsampling) and ``transformer`` (block + stage).

Import from the module that defines a block (``from aio.models.blocks.lora import ...``); this package
imports nothing itself.
"""
