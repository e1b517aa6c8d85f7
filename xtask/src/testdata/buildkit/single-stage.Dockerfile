FROM xtask-fixture-busybox:tmp
ENV A=1
WORKDIR /w
COPY hello.txt .
RUN cat hello.txt
RUN echo one
RUN echo two
RUN echo three
RUN echo four
RUN echo five
RUN echo six
LABEL x=y
